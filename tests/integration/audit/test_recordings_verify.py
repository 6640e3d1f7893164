"""``audit verify`` holds the gateway's session recordings to the ``session.ended`` records that list
them: an edited, cut, deleted or relinked recording, or one whose name points outside the
recordings directory, fails verification naming the session and the file, alike in the CLI
(exit 10) and in ``GET /api/v1/audit/verify``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM
from jitgate.gateway.recording import RecordingFacts, SessionRecordings
from jitgate.runtime import Runtime
from jitgate.workflow.users import add_user

SID = "s-5e55105e55105e55"
START = 1_764_000_000.0


def jitgate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "jitgate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def record_session(runtime: Runtime, session_id: str = SID) -> list[RecordingFacts]:
    """What the gateway does for one session: record two channels, end, audit the facts."""
    session = SessionRecordings(runtime.settings.recordings_dir, session_id)
    shell = session.shell(0, width=80, height=24, term="xterm", command=None, timestamp=START)
    shell.output(0.1, b"$ ")
    shell.input(0.5, b"uptime\r")
    shell.output(0.6, b"up 3 days\r\n" * 50)
    shell.close(0)
    run = session.exec(1, "df -h", cap_bytes=1024, timestamp=START)
    run.stdout(0.2, b"/dev/sda1 40G\n")
    facts = session.close_all()
    audit_session_ended(runtime, session_id, [f.as_json() for f in facts])
    return facts


def audit_session_ended(runtime: Runtime, session_id: str, recordings: list[dict[str, Any]]) -> None:
    ctx = runtime.ctx
    with ctx.transaction() as conn:
        ctx.audit_event(
            conn,
            "alice",
            "session.ended",
            target="web-1",
            details={"session_id": session_id, "recordings": recordings},
        )


@pytest.fixture
def admin(runtime: Runtime, clock: FrozenClock) -> dict[str, str]:
    _, token = add_user(
        runtime.ctx.db, runtime.ctx.audit, clock, actor=SYSTEM.name, name="admin", groups=[], admin=True
    )
    return {"Authorization": f"Bearer {token}"}


def verdicts(
    runtime: Runtime, client: TestClient, admin: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    cli = jitgate("audit", "verify", "--data-dir", str(runtime.settings.data_dir))
    answer = client.get("/api/v1/audit/verify", headers=admin)
    assert answer.status_code == 200, answer.text
    return cli, answer.json()


def test_recordings_as_written_verify_in_the_cli_and_the_api(
    runtime: Runtime, client: TestClient, admin: dict[str, str]
) -> None:
    record_session(runtime)
    cli, api = verdicts(runtime, client, admin)
    assert cli.returncode == 0, cli.stderr
    assert "2 recordings of 1 session match" in cli.stdout
    assert (api["ok"], api["verdict"], api["problems"]) == (True, "intact", [])
    assert "2 recordings of 1 session match" in api["anchors"]


def edit_one_byte(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))


def cut_the_last_byte(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1])


def append_a_line(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(b'[9.0, "o", "added later"]\n')


def relink_to_a_copy_outside(path: Path) -> None:
    """The same bytes, but through a symbolic link out of the recordings directory."""
    outside = path.parents[3] / "elsewhere.cast"
    shutil.copyfile(path, outside)
    path.unlink()
    path.symlink_to(outside)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (edit_one_byte, "differs from the audit record: its SHA-256 is not the one recorded (edited?)"),
        (cut_the_last_byte, "(cut short?)"),
        (append_a_line, "(added to?)"),
        (Path.unlink, "is missing"),
        (relink_to_a_copy_outside, "is a symbolic link (never followed)"),
    ],
)
def test_a_damaged_recording_fails_verification_naming_session_and_file(
    runtime: Runtime, client: TestClient, admin: dict[str, str], damage: Callable[[Path], None], why: str
) -> None:
    facts = record_session(runtime)
    shell = facts[0]
    damage(runtime.settings.recordings_dir / shell.file)

    cli, api = verdicts(runtime, client, admin)
    assert cli.returncode == 10
    (line,) = cli.stderr.strip().splitlines()  # the other recording is intact
    assert line.startswith(f"recording damaged: session {SID}: recording {SID}/0-shell.cast ")
    assert why in line
    assert (api["ok"], api["verdict"]) == (False, "recordings_damaged")
    assert api["problem"].startswith(f"session {SID}: recording {shell.file} ")
    assert why in api["problem"]
    assert api["problems"] == [line.removeprefix("recording damaged: ")]  # one verdict, both ways
    assert api["first_bad_seq"] is not None


def test_every_damaged_recording_gets_its_own_line(
    runtime: Runtime, client: TestClient, admin: dict[str, str]
) -> None:
    facts = record_session(runtime)
    other = record_session(runtime, "s-0000000000000002")
    for each in (facts[1], other[0]):
        (runtime.settings.recordings_dir / each.file).unlink()
    cli, api = verdicts(runtime, client, admin)
    assert cli.returncode == 10
    assert cli.stderr.strip().splitlines() == [
        f"recording damaged: session {SID}: recording {SID}/1-exec.jsonl is missing",
        "recording damaged: session s-0000000000000002: recording s-0000000000000002/0-shell.cast is missing",
    ]
    assert len(api["problems"]) == 2


@pytest.mark.parametrize(
    "file",
    [
        "../outside.cast",
        "/ABSOLUTE",
        f"{SID}/../../outside.cast",
        f"{SID}/./0-shell.cast",
        "s-0000000000000009/0-shell.cast",  # another session's directory
    ],
)
def test_a_file_name_outside_the_recordings_directory_is_a_problem_and_never_opened(
    runtime: Runtime, client: TestClient, admin: dict[str, str], file: str
) -> None:
    facts = record_session(runtime)
    shell = facts[0]
    # A file of the very size and hash recorded wherever the name points: opening it would pass.
    root = runtime.settings.recordings_dir
    content = (root / shell.file).read_bytes()
    target = Path(file.replace("/ABSOLUTE", str(root.parent / "absolute.cast")))
    path = target if target.is_absolute() else root / target
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    named = str(target) if target.is_absolute() else file
    audit_session_ended(runtime, SID, [{**shell.as_json(), "file": named}])

    cli, api = verdicts(runtime, client, admin)
    assert cli.returncode == 10
    (line,) = cli.stderr.strip().splitlines()
    assert line.startswith(f"recording damaged: session {SID}: recording ")
    assert "(not opened)" in line
    assert api["problems"] == [line.removeprefix("recording damaged: ")]


def test_a_session_directory_swapped_for_a_link_is_never_followed(
    runtime: Runtime, client: TestClient, admin: dict[str, str]
) -> None:
    record_session(runtime)
    root = runtime.settings.recordings_dir
    shutil.copytree(root / SID, root.parent / "copy")
    shutil.rmtree(root / SID)
    (root / SID).symlink_to(root.parent / "copy")
    cli, api = verdicts(runtime, client, admin)
    assert cli.returncode == 10
    assert len(cli.stderr.strip().splitlines()) == 2
    assert "its session's directory is a symbolic link (never followed)" in api["problem"]


def test_recordings_kept_elsewhere_are_checked_where_the_option_says(runtime: Runtime) -> None:
    record_session(runtime)
    moved = runtime.settings.data_dir.parent / "archive"
    shutil.move(runtime.settings.recordings_dir, moved)
    data = str(runtime.settings.data_dir)
    assert jitgate("audit", "verify", "--data-dir", data).returncode == 10
    done = jitgate("audit", "verify", "--data-dir", data, "--recordings", str(moved))
    assert done.returncode == 0, done.stderr
    assert "2 recordings of 1 session match" in done.stdout
