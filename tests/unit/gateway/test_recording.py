"""Session recordings on real files: private, hashed exactly as written, in formats others can read,
and failing closed (one line, facts still given) when the disk is full."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asciinema import asciicast

from jitgate.audit.recordings import RECORDING_FILE
from jitgate.gateway import playback
from jitgate.gateway.recording import RecordingFacts, RecordingFailed, SessionRecordings
from support import component_missing

SID = "s-0123456789abcdef"
START = 1_764_000_000.25


def lines(root: Path, facts: RecordingFacts) -> list[Any]:
    return [json.loads(line) for line in (root / facts.file).read_text("utf-8").splitlines()]


def assert_facts_match_the_file(root: Path, facts: RecordingFacts) -> None:
    content = (root / facts.file).read_bytes()
    assert (facts.size, facts.sha256) == (len(content), hashlib.sha256(content).hexdigest())


def test_a_shell_session_is_a_cast_as_asciicast_v2_specifies(tmp_path: Path) -> None:
    session = SessionRecordings(tmp_path, SID)
    shell = session.shell(0, width=120, height=40, term="xterm-256color", command=None, timestamp=START)
    greeting = "héllo wörld ✓ 𝄞\r\n".encode()
    for i in range(len(greeting)):  # every UTF-8 sequence split across chunks
        shell.output(0.1 + i / 1000, greeting[i : i + 1])
    shell.input(1.0, b"ls\r")
    shell.output(1.2, b"bad \xff byte\r\n")
    shell.resize(2.0, 100, 30)
    shell.output(1.5, b"late clock\r\n")  # a time from before the last one never goes back
    facts = shell.close(0)

    header, *events = lines(tmp_path, facts)
    assert header == {
        "version": 2,
        "width": 120,
        "height": 40,
        "timestamp": 1_764_000_000,
        "env": {"TERM": "xterm-256color"},
    }
    times = [event[0] for event in events]
    assert times == sorted(times)
    for event in events:
        assert len(event) == 3
        assert isinstance(event[0], float)
        assert event[0] >= 0
        assert event[1] in {"o", "i", "r"}
        assert isinstance(event[2], str)
    assert (
        "".join(e[2] for e in events if e[1] == "o") == "héllo wörld ✓ 𝄞\r\nbad \ufffd byte\r\nlate clock\r\n"
    )
    assert [e[1:] for e in events if e[1] != "o"] == [["i", "ls\r"], ["r", "100x30"]]
    assert events[-1][0] == 2.0
    assert_facts_match_the_file(tmp_path, facts)
    assert (facts.channel, facts.kind, facts.file, facts.truncated) == (
        0,
        "shell",
        f"{SID}/0-shell.cast",
        False,
    )
    assert RECORDING_FILE.fullmatch(facts.file)
    assert facts.as_json() == {
        "channel": 0,
        "kind": "shell",
        "file": f"{SID}/0-shell.cast",
        "sha256": facts.sha256,
        "size": facts.size,
        "truncated": False,
    }


def test_asciinema_itself_reads_the_cast_as_it_was_recorded(tmp_path: Path) -> None:
    session = SessionRecordings(tmp_path, SID)
    shell = session.shell(0, width=80, height=24, term="xterm", command=None, timestamp=START)
    shell.output(0.1, "\x1b[1mbold ✓\x1b[0m\r\n".encode()[:9])
    shell.output(0.2, "\x1b[1mbold ✓\x1b[0m\r\n".encode()[9:])
    shell.input(0.3, b"exit\r")
    shell.resize(0.4, 132, 43)
    shell.output(0.5, "line\u2028separator\r\n".encode())
    facts = shell.close(0)
    path = tmp_path / facts.file
    with asciicast.open_from_url(str(path)) as cast:
        assert cast.v2_header["width"] == 80
        events = list(cast.events())
    assert [e[1] for e in events] == ["o", "o", "i", "r", "o"]
    cat = subprocess.run(
        [sys.executable, "-m", "asciinema", "cat", str(path)],
        capture_output=True,
        check=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no terminal: asciinema must not take one over
    )
    assert cat.stdout.decode() == "\x1b[1mbold ✓\x1b[0m\r\nline\u2028separator\r\n"


def test_the_cast_plays_back_as_it_was_recorded(tmp_path: Path) -> None:
    session = SessionRecordings(tmp_path, SID)
    shell = session.shell(1, width=80, height=24, term="xterm", command="top", timestamp=START)
    shell.output(0.5, b"one ")
    shell.output(2.5, b"two")
    facts = shell.close(None)
    cast = (tmp_path / facts.file).read_text("utf-8")
    assert json.loads(cast.splitlines()[0])["command"] == "top"
    assert list(playback.frames(cast)) == [(0.5, "one "), (2.0, "two")]


def test_files_are_private_created_new_and_never_through_a_link(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    session = SessionRecordings(root, SID)
    session.exec(3, "id", cap_bytes=100, timestamp=START).close(0)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / SID).stat().st_mode) == 0o700
    assert stat.S_IMODE((root / SID / "3-exec.jsonl").stat().st_mode) == 0o600

    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (root / SID / "4-shell.cast").symlink_to(victim)
    with pytest.raises(RecordingFailed, match=r"^the session recording cannot be written: File exists$"):
        session.shell(4, width=80, height=24, term="xterm", command=None, timestamp=START)
    assert victim.read_text() == "untouched"
    with pytest.raises(RecordingFailed, match="File exists"):
        SessionRecordings(root, SID)  # a directory already there is never shared


@pytest.mark.parametrize(
    "bad", ["", "s-0123", "s-0123456789ABCDEF", "../s-0123456789abcdef", "s-0123456789abcdef/x"]
)
def test_only_a_session_id_names_a_directory(tmp_path: Path, bad: str) -> None:
    with pytest.raises(RecordingFailed, match="session id"):
        SessionRecordings(tmp_path, bad)
    assert list(tmp_path.iterdir()) == []


def test_exec_keeps_each_direction_up_to_its_cap_and_binary_exactly(tmp_path: Path) -> None:
    session = SessionRecordings(tmp_path, SID)
    run = session.exec(2, "cat /bin/true | head -c 40", cap_bytes=16, timestamp=START)
    binary = bytes(range(256))
    run.stdin(0.0, b"input")
    run.stdout(0.1, binary[:10])
    run.stdout(0.2, binary[10:])  # far past the cap: counted, not stored
    run.stderr(0.3, "warn: é".encode())
    facts = run.close(1)

    header, *events, last = lines(tmp_path, facts)
    assert header == {
        "version": 1,
        "kind": "exec",
        "command": "cat /bin/true | head -c 40",
        "timestamp": START,
        "cap_bytes": 16,
    }
    stored = {
        code: b"".join(e[2].encode("utf-8", "surrogateescape") for e in events if e[1] == code)
        for code in "ioe"
    }
    assert stored == {"i": b"input", "o": binary[:16], "e": "warn: é".encode()}
    assert last == {
        "exit_status": 1,
        "bytes": {"in": 5, "out": 256, "err": 8},
        "stored": {"in": 5, "out": 16, "err": 8},
        "truncated": True,
    }
    assert facts.truncated
    assert_facts_match_the_file(tmp_path, facts)


def test_exec_under_its_cap_is_not_truncated_and_a_split_sequence_arrives_whole(tmp_path: Path) -> None:
    session = SessionRecordings(tmp_path, SID)
    run = session.exec(0, "echo ✓", cap_bytes=1024, timestamp=START)
    check = "✓\n".encode()
    run.stdout(0.0, check[:1])
    run.stdout(0.1, check[1:])
    facts = run.close(0)
    _, *events, last = lines(tmp_path, facts)
    assert [e[1:] for e in events] == [["o", "✓\n"]]
    assert last["truncated"] is False
    assert not facts.truncated


def test_a_forward_is_where_from_where_to_and_how_much(tmp_path: Path) -> None:
    session = SessionRecordings(tmp_path, SID)
    tunnel = session.forward(
        5, dest_host="db.internal", dest_port=5432, orig_host="127.0.0.1", orig_port=40000, timestamp=START
    )
    tunnel.sent(0.5, 100)
    tunnel.received(1.0, 2000)
    tunnel.sent(3.0, 50)
    facts = tunnel.close()
    assert lines(tmp_path, facts) == [
        {
            "version": 1,
            "kind": "forward",
            "dest_host": "db.internal",
            "dest_port": 5432,
            "orig_host": "127.0.0.1",
            "orig_port": 40000,
            "timestamp": START,
        },
        {"bytes": {"sent": 150, "received": 2000}, "duration": 3.0},
    ]
    assert facts.file == f"{SID}/5-forward.jsonl"


def test_close_all_closes_what_is_open_and_gives_every_recording_in_channel_order(tmp_path: Path) -> None:
    session = SessionRecordings(tmp_path, SID)
    session.sftp(7, timestamp=START)
    first = session.shell(2, width=80, height=24, term="", command=None, timestamp=START)
    first.output(0.1, b"x")
    first.close(0)
    again = session.shell(2, width=80, height=24, term="", command=None, timestamp=START)  # number reused
    again.output(0.2, b"half \xe2\x9c")  # cut inside a sequence when the session is killed
    session.exec(0, "sleep 100", cap_bytes=10, timestamp=START)
    session.flush()

    facts = session.close_all()
    assert [(f.channel, f.file) for f in facts] == [
        (0, f"{SID}/0-exec.jsonl"),
        (2, f"{SID}/2-shell.cast"),
        (2, f"{SID}/2-shell-2.cast"),
        (7, f"{SID}/7-sftp.jsonl"),
    ]
    for each in facts:
        assert RECORDING_FILE.fullmatch(each.file)
        assert_facts_match_the_file(tmp_path, each)
    assert "".join(e[2] for e in lines(tmp_path, facts[2])[1:]) == "half \ufffd"
    assert session.facts() == facts
    assert again.close(0) == facts[2]  # closing again changes nothing
    with pytest.raises(RecordingFailed, match="closed"):
        again.output(1.0, b"more")
    with pytest.raises(RecordingFailed, match="closed"):
        session.shell(9, width=80, height=24, term="", command=None, timestamp=START)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs: the disk the recordings fill."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        component_missing(f"a 64 KiB tmpfs (mount, as root: {done.stderr.strip() or done.returncode})")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(mount)], check=True, capture_output=True)  # a file left open


def test_a_full_disk_fails_closed_in_one_line_and_close_still_gives_the_facts(full_disk: Path) -> None:
    session = SessionRecordings(full_disk, SID)
    shell = session.shell(0, width=80, height=24, term="xterm", command=None, timestamp=START)
    chunk = b"y" * 1000 + b"\r\n"
    failed = None
    for i in range(1000):
        try:
            shell.output(i / 10, chunk)
        except RecordingFailed as exc:
            failed = exc
            break
    assert failed is not None, "64 KiB of disk took a megabyte"
    message = str(failed)
    assert message == "the session recording cannot be written: No space left on device"
    assert "\n" not in message
    assert failed.code == "recording_failed"
    with pytest.raises(RecordingFailed, match="No space left"):
        shell.output(200.0, b"after the failure")  # unusable from now on
    with pytest.raises(RecordingFailed, match="No space left"):
        session.flush()  # the gateway's periodic flush ends the session

    facts = shell.close(None)
    assert facts.truncated
    assert 0 < facts.size <= 64 * 1024
    assert_facts_match_the_file(full_disk, facts)  # exactly what reached the disk
    assert session.close_all() == [facts]


def test_a_recorder_whose_first_write_fails_at_close_still_gives_its_facts(full_disk: Path) -> None:
    (full_disk / "filler").write_bytes(b"f" * (60 * 1024))
    session = SessionRecordings(full_disk, SID)
    run = session.exec(1, "yes", cap_bytes=1 << 20, timestamp=START)
    run.stdout(0.0, b"y\n" * 8000)  # buffered: nothing written yet
    facts = run.close(0)
    assert facts.truncated
    assert_facts_match_the_file(full_disk, facts)
    with pytest.raises(RecordingFailed, match="No space left"):
        session.flush()
    assert session.close_all() == [facts]
    (full_disk / "filler").unlink()
