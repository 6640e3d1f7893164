"""Attacks by whoever administers the broker's own database, against a real broker process.

The audit log resists them (a rolled-back or edited log is refused), but the grants table is read
as stored: a database administrator who writes an expired grant back to ``ACTIVE`` with a later
``expires_at`` gets certificates minted under it, and `audit verify` still says ``intact``.

The backlog of records parked while the log was broken is another unsigned table that the broker
later appends and signs by itself: a row planted there must never become signed history.
"""

from __future__ import annotations

import json
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


FORGED = {
    "at": "2026-01-02T03:04:05.000000Z",
    "actor": "bob",
    "action": "review.approved",
    "request_id": "r-0123456789ab",
    "grant_id": None,
    "role": "stage-shell",
    "target": None,
    "details": {"comment": "approved, as bob never did"},
}


def trail(client: httpx.Client) -> list[dict[str, object]]:
    answer = client.get("/api/v1/audit", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def test_a_record_planted_in_the_backlog_never_becomes_signed_history(live: tuple[Process, Path]) -> None:
    process, database = live
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO audit_backlog (parked_at, why, event) VALUES (?, ?, ?)",
            ("2026-01-02 03:04:06.000000", "audit log rolled back", json.dumps(FORGED)),
        )
    with httpx.Client(
        base_url=process.url, headers={"Authorization": f"Bearer {process.admin_token}"}, timeout=10
    ) as admin:
        deadline = time.monotonic() + 30
        while not any(event["action"] == "audit.unparked" for event in trail(admin)):
            assert time.monotonic() < deadline, "the broker never looked at its backlog"
            time.sleep(0.2)
        events = trail(admin)
        verdict = admin.get("/api/v1/audit/verify").json()
    assert [e for e in events if e["action"] == "review.approved"] == []
    (note,) = [e for e in events if e["action"] == "audit.unparked"]
    details = note["details"]
    assert isinstance(details, dict)
    assert details["records"] == 0
    assert "not sealed" in json.dumps(details["lost"])
    assert verdict["ok"] is True
