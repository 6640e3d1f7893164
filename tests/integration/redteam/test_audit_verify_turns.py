"""Verifying the whole audit chain takes turns, between the console and the API alike.

A verification reads every record: seconds of a core on a long log. ``GET /api/v1/audit/verify``
used to run as many at once as an auditor asked for, each holding one of the worker threads every
route of the broker runs on, so a loop of calls could stall revocations and sign-ins for everyone.
Now a second verification, from either side, is refused at once while one runs in the process.
"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM
from jitgate.runtime import Runtime
from jitgate.workflow.users import add_user

ORIGIN = "https://jitgate.test"


def test_a_verification_is_refused_while_another_runs_and_runs_once_it_ended(
    runtime: Runtime, clock: FrozenClock
) -> None:
    _, token = add_user(
        runtime.ctx.db, runtime.ctx.audit, clock, actor=SYSTEM.name, name="audra", groups=["auditors"]
    )
    bearer = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(runtime, run_scheduler=False), base_url=ORIGIN) as client:
        login = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/ui/login").text)
        assert login is not None
        client.post("/ui/login", data={"token": token, "csrf": login.group(1)})
        form = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/ui/audit").text)
        assert form is not None

        with runtime.verifying:  # a verification running in this process (started by anyone)
            busy = client.get("/api/v1/audit/verify", headers=bearer)
            pressed = client.post(
                "/ui/audit/verify", data={"csrf": form.group(1)}, headers={"Origin": ORIGIN}
            )
        assert busy.status_code == 409
        assert busy.json()["detail"].startswith("a verification of the audit log is already running")
        assert "a verification is already running" in pressed.text

        assert client.get("/api/v1/audit/verify", headers=bearer).json()["verdict"] == "intact"
        started = client.post("/ui/audit/verify", data={"csrf": form.group(1)}, headers={"Origin": ORIGIN})
        assert "verification started" in started.text
        client.app.state.audit_verdicts.wait(60)  # type: ignore[attr-defined]
        assert "<strong>intact</strong>" in client.get("/ui/audit").text
        assert not runtime.verifying.locked()
