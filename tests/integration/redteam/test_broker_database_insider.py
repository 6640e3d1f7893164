"""Attacks by whoever administers the broker's own database, against a real broker process.

The audit log resists them (a rolled-back or edited log is refused), but the grants table is read
as stored: a database administrator who writes an expired grant back to ``ACTIVE`` with a later
``expires_at`` gets certificates minted under it, and `audit verify` still says ``intact``.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.broker_process import Process, broker


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Process, Path]]:
    with broker(tmp_path, {}) as process:
        yield process, tmp_path / "data" / "jitgate.db"


def public_key(tmp_path: Path) -> str:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_suffix(".pub").read_text().strip()


def expired_grant(client: httpx.Client) -> str:
    made = client.post("/api/v1/requests", json={"role": "stage-shell", "reason": "CHG-1", "duration": "1s"})
    assert made.status_code == 201, made.text
    grant_id = str(made.json()["grant"]["id"])
    deadline = time.monotonic() + 30
    while client.get(f"/api/v1/grants/{grant_id}").json()["state"] != "EXPIRED":
        assert time.monotonic() < deadline, "the grant never expired"
        time.sleep(0.2)
    return grant_id


@pytest.mark.xfail(
    strict=True,
    reason="grant rows are trusted as stored: nothing ties a grant's state and end to its audited history",
)
def test_a_grant_revived_in_the_database_mints_no_certificate(
    live: tuple[Process, Path], tmp_path: Path
) -> None:
    process, database = live
    key = public_key(tmp_path)
    with httpx.Client(
        base_url=process.url, headers={"Authorization": f"Bearer {process.token}"}, timeout=10
    ) as alice:
        grant_id = expired_grant(alice)
        ask = {"target": "stage-1", "public_key": key}
        assert alice.post("/api/v1/ssh/certificates", json=ask).status_code == 403

        # The database administrator: one UPDATE, no audit record touched.
        with sqlite3.connect(database) as db:
            db.execute(
                "UPDATE grants SET state = 'ACTIVE', expires_at = '2099-01-01 00:00:00.000000',"
                " ended_at = NULL, end_reason = NULL WHERE id = ?",
                (grant_id,),
            )

        minted = alice.post("/api/v1/ssh/certificates", json=ask)
    assert minted.status_code != 201, "a certificate was minted under a grant the audit log says expired"
