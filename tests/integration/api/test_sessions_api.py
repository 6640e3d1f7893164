"""Gateway sessions over HTTP: holders see their own, admins and auditors everyone's, anyone else
is told the session does not exist; recordings come back as the gateway wrote them; admins and
holders end live sessions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from jitgate.runtime import Runtime
from jitgate.store import queries as q
from jitgate.workflow import requests as svc
from jitgate.workflow import sessions
from jitgate.workflow.users import add_user
from support import ALICE

CAST = '{"version": 2, "width": 80, "height": 24}\n[0.5, "o", "$ "]\n[1.0, "o", "uptime\\r\\n"]\n'
EXEC = '{"channel": 1, "command": "id"}\n'


@pytest.fixture
def tokens(runtime: Runtime) -> dict[str, str]:
    ctx = runtime.ctx
    people = {"alice": ["engineers"], "bob": ["engineers"], "audrey": ["auditors"], "admin": []}
    return {
        name: add_user(
            ctx.db, ctx.audit, ctx.clock, actor="test", name=name, groups=groups, admin=name == "admin"
        )[1]
        for name, groups in people.items()
    }


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def open_alices(runtime: Runtime) -> str:
    ctx = runtime.ctx
    req = svc.submit(ctx, ALICE, role="stage-shell", duration="10m", reason="INC-1")
    with ctx.db.read() as conn:
        grant = q.get_grant(conn, req["grant"]["id"])
    assert grant is not None
    return sessions.open_session(
        ctx,
        ALICE,
        grant=grant,
        target="stage-1",
        login="deploy",
        credential_serial="77",
        source="127.0.0.1:4000",
        gateway="gw-1",
    )


def recorded(runtime: Runtime, session_id: str) -> Path:
    root = runtime.settings.recordings_dir
    (root / session_id).mkdir(parents=True)
    facts = []
    for channel, (kind, name, text) in enumerate([("exec", "1.ndjson", EXEC), ("shell", "0.cast", CAST)]):
        path = root / session_id / name
        path.write_text(text)
        path.chmod(0o600)
        digest = hashlib.sha256(text.encode()).hexdigest()
        facts.append(
            {
                "channel": 1 - channel,
                "kind": kind,
                "file": f"{session_id}/{name}",
                "sha256": digest,
                "size": len(text),
                "truncated": False,
            }
        )
    sessions.close_session(
        runtime.ctx, session_id, reason="client left", bytes_in=5, bytes_out=9, recordings=facts
    )
    return root


def test_holder_admin_and_auditors_see_a_session_and_others_are_told_it_does_not_exist(
    runtime: Runtime, client: TestClient, tokens: dict[str, str]
) -> None:
    session_id = open_alices(runtime)
    for reader in ("alice", "admin", "audrey"):
        shown = client.get(f"/api/v1/sessions/{session_id}", headers=auth(tokens[reader]))
        assert shown.status_code == 200, shown.text
        assert shown.json()["user"] == "alice"
        assert shown.json()["state"] == "live"
    hidden = client.get(f"/api/v1/sessions/{session_id}", headers=auth(tokens["bob"]))
    assert hidden.status_code == 404
    assert hidden.json()["detail"] == f"no session {session_id}"
    assert client.get("/api/v1/sessions/s-nope", headers=auth(tokens["bob"])).json() == hidden.json() | {
        "detail": "no session s-nope"
    }

    assert [s["id"] for s in client.get("/api/v1/sessions", headers=auth(tokens["alice"])).json()] == [
        session_id
    ]
    assert client.get("/api/v1/sessions", headers=auth(tokens["bob"])).json() == []
    assert (
        client.get("/api/v1/sessions", params={"user": "alice"}, headers=auth(tokens["bob"])).status_code
        == 403
    )
    for reader in ("admin", "audrey"):
        everyone = client.get(
            "/api/v1/sessions", params={"user": "*", "active": "true"}, headers=auth(tokens[reader])
        )
        assert [s["id"] for s in everyone.json()] == [session_id]


def test_lists_page_by_cursor(runtime: Runtime, client: TestClient, tokens: dict[str, str]) -> None:
    made = {open_alices(runtime) for _ in range(3)}
    first = client.get("/api/v1/sessions", params={"limit": 2}, headers=auth(tokens["alice"]))
    assert len(first.json()) == 2
    following = first.links["next"]["url"]
    rest = client.get(following, headers=auth(tokens["alice"])).json()
    assert {s["id"] for s in first.json()} | {s["id"] for s in rest} == made


def test_recordings_download_as_written_with_their_kind(
    runtime: Runtime, client: TestClient, tokens: dict[str, str]
) -> None:
    session_id = open_alices(runtime)
    none_yet = client.get(f"/api/v1/sessions/{session_id}/recording", headers=auth(tokens["alice"]))
    assert none_yet.status_code == 404
    recorded(runtime, session_id)
    shell = client.get(f"/api/v1/sessions/{session_id}/recording", headers=auth(tokens["alice"]))
    assert shell.status_code == 200
    assert shell.headers["content-type"] == "application/x-asciicast"
    assert shell.text == CAST
    other = client.get(f"/api/v1/sessions/{session_id}/recording?channel=1", headers=auth(tokens["audrey"]))
    assert other.headers["content-type"] == "application/x-ndjson"
    assert other.text == EXEC
    assert (
        client.get(
            f"/api/v1/sessions/{session_id}/recording?channel=5", headers=auth(tokens["admin"])
        ).status_code
        == 404
    )
    assert (
        client.get(f"/api/v1/sessions/{session_id}/recording", headers=auth(tokens["bob"])).status_code == 404
    )
    (runtime.settings.recordings_dir / session_id / "0.cast").unlink()
    assert (
        client.get(f"/api/v1/sessions/{session_id}/recording", headers=auth(tokens["alice"])).status_code
        == 404
    )


def test_admins_and_holders_end_live_sessions(
    runtime: Runtime, client: TestClient, tokens: dict[str, str]
) -> None:
    session_id = open_alices(runtime)
    path = f"/api/v1/sessions/{session_id}/kill"
    assert client.post(path, json={"reason": "nosy"}, headers=auth(tokens["bob"])).status_code == 404
    assert client.post(path, json={"reason": "nosy"}, headers=auth(tokens["audrey"])).status_code == 403
    assert client.post(path, json={}, headers=auth(tokens["admin"])).status_code == 422
    killed = client.post(path, json={"reason": "INC-7"}, headers=auth(tokens["admin"]))
    assert killed.status_code == 200, killed.text
    assert killed.json()["kill_requested_by"] == "admin"
    assert killed.json()["state"] == "live"  # until its gateway closes it
    assert sessions.watch(runtime.ctx, [session_id])[session_id].close_reason == "ended by admin (INC-7)"
    assert client.post(path, json={"reason": "again"}, headers=auth(tokens["alice"])).status_code == 409
