"""Access scheduled ahead must still be the holder's to have when it starts, on a real broker.

A requester may ask for a window that starts later (up to 90 days ahead); with an auto-approved
role it is approved at once and waits as ``APPROVED``. Scheduled grants are not pending requests,
so the pending cap does not count them. If the holder then stops being allowed the role (an admin
takes them out of the requesters' group: they changed team, or left it), the grants they lined up
beforehand must not start anyway: otherwise a few dozen requests made in advance are standing
access for three months that no group change takes back.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from support.broker_process import Process, broker


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Process]:
    with broker(tmp_path, {}) as process:
        yield process


def public_key(tmp_path: Path) -> str:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_suffix(".pub").read_text().strip()


def api(process: Process, token: str) -> httpx.Client:
    return httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_grant_scheduled_before_its_holder_left_the_requesters_group_never_opens(
    live: Process, tmp_path: Path
) -> None:
    key = public_key(tmp_path)
    starts = datetime.now(UTC) + timedelta(seconds=3)
    with api(live, live.token) as alice, api(live, live.admin_token) as admin:
        ask = {"role": "stage-shell", "reason": "CHG-7", "duration": "10m", "start_at": starts.isoformat()}
        made = alice.post("/api/v1/requests", json=ask)
        assert made.status_code == 201, made.text
        grant_id = made.json()["grant"]["id"]
        assert made.json()["grant"]["state"] == "APPROVED"

        moved = admin.post("/api/v1/users/alice/groups", json={"remove": ["engineers"]})
        assert moved.status_code == 200, moved.text
        refused = alice.post("/api/v1/requests", json={**ask, "start_at": None, "duration": "1m"})
        assert refused.status_code == 403  # alice may no longer ask for the role

        deadline = time.monotonic() + 30
        while alice.get(f"/api/v1/grants/{grant_id}").json()["state"] == "APPROVED":
            assert time.monotonic() < deadline, "the scheduled grant was never looked at"
            time.sleep(0.2)
        minted = alice.post("/api/v1/ssh/certificates", json={"target": "stage-1", "public_key": key})
        state = alice.get(f"/api/v1/grants/{grant_id}").json()["state"]
    assert minted.status_code == 403, "a certificate was minted under a grant its holder may no longer have"
    assert state != "ACTIVE"
