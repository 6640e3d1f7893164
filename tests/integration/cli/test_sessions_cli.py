"""``jitgate sessions`` against a real ``jitgate server``: sessions recorded on its data directory
are listed, shown, exported (privately, never over a file without ``--force``), replayed with their
timing, and ended, with the usual exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jitgate.clock import SystemClock
from jitgate.domain.identity import Identity
from jitgate.policy.loader import load_policy
from jitgate.runtime import open_audit, open_database
from jitgate.settings import Settings
from jitgate.store import queries as q
from jitgate.workflow import sessions
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from support.broker_process import JITGATE, Process, broker

ALICE = Identity("alice", frozenset({"engineers"}))
CAST = (
    '{"version": 2, "width": 80, "height": 24}\n'
    '[0.2, "o", "$ "]\n[0.9, "i", "u"]\n[1.5, "o", "uptime\\r\\n"]\n[3.0, "o", " 09:00 up 3 days\\r\\n"]\n'
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Process, WorkflowContext, Path]]:
    with broker(tmp_path, {}) as process:
        settings = Settings(data_dir=tmp_path / "data", policy_file=tmp_path / "policy.yaml")
        db = open_database(settings)
        ctx = WorkflowContext(
            db=db,
            policies=PolicyHolder(load_policy(tmp_path / "policy.yaml")),
            audit=open_audit(settings),
            clock=SystemClock(),
        )
        try:
            yield process, ctx, settings.recordings_dir
        finally:
            db.dispose()


def jitgate(process: Process, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JITGATE_URL": process.url, "JITGATE_TOKEN": token or process.token}
    env["XDG_CONFIG_HOME"] = str(Path(process.log).parent / "cfg")
    return subprocess.run([*JITGATE, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def seeded(process: Process, ctx: WorkflowContext, root: Path, *, closed: bool) -> str:
    """A session of alice's, as the gateway records it: opened, and (if ``closed``) ended with a cast."""
    made = httpx.post(
        f"{process.url}/api/v1/requests",
        json={"role": "stage-shell", "reason": "CHG-1", "duration": "10m"},
        headers={"Authorization": f"Bearer {process.token}"},
    )
    assert made.status_code == 201, made.text
    with ctx.db.read() as conn:
        grant = q.get_grant(conn, made.json()["grant"]["id"])
    assert grant is not None
    session_id = sessions.open_session(
        ctx,
        ALICE,
        grant=grant,
        target="stage-1",
        login="deploy",
        credential_serial="4242",
        source="127.0.0.1:50000",
        gateway="gw-test",
    )
    if closed:
        (root / session_id).mkdir(parents=True)
        (root / session_id / "0.cast").write_text(CAST)
        facts = {
            "channel": 0,
            "kind": "shell",
            "file": f"{session_id}/0.cast",
            "sha256": hashlib.sha256(CAST.encode()).hexdigest(),
            "size": len(CAST),
            "truncated": False,
        }
        sessions.close_session(
            ctx,
            session_id,
            reason="client left",
            bytes_in=12,
            bytes_out=2048,
            recordings=[facts],
            exit_status=0,
        )
    return session_id


def test_sessions_are_listed_shown_exported_and_replayed(
    live: tuple[Process, WorkflowContext, Path], tmp_path: Path
) -> None:
    process, ctx, root = live
    done = seeded(process, ctx, root, closed=True)
    running = seeded(process, ctx, root, closed=False)

    listed = jitgate(process, "sessions", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [s["id"] for s in json.loads(listed.stdout)] == [running, done]
    active = json.loads(jitgate(process, "sessions", "list", "--active", "--json").stdout)
    assert [s["id"] for s in active] == [running]
    everyone = jitgate(process, "sessions", "list", "--all", token=process.admin_token)
    assert everyone.returncode == 0, everyone.stderr
    assert done in everyone.stdout
    assert "2.0 KiB" in everyone.stdout

    shown = jitgate(process, "sessions", "show", done)
    assert shown.returncode == 0, shown.stderr
    assert "client left" in shown.stdout
    assert "deploy@stage-1" in shown.stdout
    assert json.loads(jitgate(process, "sessions", "show", done, "--json").stdout)["bytes_out"] == 2048
    missing = jitgate(process, "sessions", "show", "s-0000000000000000")
    assert missing.returncode == 6
    assert missing.stderr.strip() == "error: no session s-0000000000000000"

    out = tmp_path / "export" / "done.cast"
    out.parent.mkdir()
    exported = jitgate(process, "sessions", "export", done, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert out.read_text() == CAST
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    out.write_text("mine")
    again = jitgate(process, "sessions", "export", done, "--out", str(out))
    assert again.returncode == 7
    assert "--force" in again.stderr
    assert out.read_text() == "mine"
    assert jitgate(process, "sessions", "export", done, "--out", str(out), "--force").returncode == 0
    assert out.read_text() == CAST
    assert sorted(p.name for p in out.parent.iterdir()) == ["done.cast"]  # no temporary file left
    none = jitgate(process, "sessions", "export", running, "--out", str(tmp_path / "none.cast"))
    assert none.returncode == 6
    assert not (tmp_path / "none.cast").exists()

    played = subprocess.run(
        [*JITGATE, "sessions", "play", done, "--speed", "1000"],
        env={**os.environ, "JITGATE_URL": process.url, "JITGATE_TOKEN": process.token},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert played.returncode == 0, played.stderr
    assert played.stdout == b"$ uptime\r\n 09:00 up 3 days\r\n"


def test_sessions_are_ended_by_their_holder_or_an_admin(live: tuple[Process, WorkflowContext, Path]) -> None:
    process, ctx, root = live
    first, second = seeded(process, ctx, root, closed=False), seeded(process, ctx, root, closed=False)
    killed = jitgate(
        process, "sessions", "kill", first, "--reason", "INC-3 contained", token=process.admin_token
    )
    assert killed.returncode == 0, killed.stderr
    assert f"session {first} of alice is being ended" in killed.stdout
    assert sessions.watch(ctx, [first])[first].close_reason == "ended by admin (INC-3 contained)"
    twice = jitgate(process, "sessions", "kill", first, "--reason", "again")
    assert twice.returncode == 7
    own = jitgate(process, "sessions", "kill", second, "--reason", "wrong host", "--json")
    assert json.loads(own.stdout)["kill_requested_by"] == "alice"
    unknown = jitgate(process, "sessions", "kill", "s-0000000000000000", "--reason", "x")
    assert unknown.returncode == 6
