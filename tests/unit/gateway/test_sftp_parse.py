"""SFTP streams become operations: a real OpenSSH sftp talking to a real sftp-server, cut into
chunks of any size, and hostile streams that must neither crash the parser nor grow its memory."""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitgate.gateway import sftp_parse as wire
from jitgate.gateway.recording import SessionRecordings
from jitgate.gateway.sftp_ops import MAX_PENDING, SftpTracker
from support import component_missing

SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
MARKER = b"PAYLOAD-NEVER-RECORDED-"
SIZE = 600_000  # more than two of OpenSSH's largest writes (255 KiB each)

# Runs as sftp's "server" (sftp -D): starts the real sftp-server and passes both directions
# through, noting each chunk (side, length, bytes) before passing it on, so that the log holds
# every request before its answer.
RELAY = """#!{python}
import os, struct, subprocess, threading
os.chdir(os.environ["SFTP_ROOT"])
log = open(os.environ["SFTP_LOG"], "ab", buffering=0)
lock = threading.Lock()
server = subprocess.Popen([{server!r}], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

def note(side, data):
    with lock:
        log.write(side + struct.pack(">I", len(data)) + data)

def up():
    while data := os.read(0, 65536):
        note(b"c", data)
        server.stdin.write(data)
    server.stdin.close()

threading.Thread(target=up, daemon=True).start()
while data := os.read(server.stdout.fileno(), 65536):
    note(b"s", data)
    os.write(1, data)
server.wait()
"""

BATCH = """\
mkdir remote
put local.bin remote/a.bin
put -p local.bin remote/p.bin
get remote/a.bin back.bin
chmod 600 remote/a.bin
rename remote/a.bin remote/b.bin
ln -s b.bin remote/link
ls -l remote
-rm remote/nosuch
rm remote/link
rm remote/b.bin
rm remote/p.bin
rmdir remote
"""


@dataclass(frozen=True)
class Capture:
    chunks: list[tuple[str, bytes]]  # ("c" | "s", bytes) in the order they passed
    served: str  # the directory the server ran in


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    if shutil.which("sftp") is None or not SFTP_SERVER.exists():
        component_missing(
            "OpenSSH's sftp and sftp-server (apt-get install -y openssh-client openssh-sftp-server)"
        )
    base = tmp_path_factory.mktemp("sftp")
    relay = base / "relay.py"
    relay.write_text(RELAY.format(python=sys.executable, server=str(SFTP_SERVER)))
    relay.chmod(0o755)
    served, local = base / "served", base / "local"
    served.mkdir()
    local.mkdir()
    (local / "local.bin").write_bytes((MARKER * (SIZE // len(MARKER) + 1))[:SIZE])
    (local / "batch").write_text(BATCH)
    log = base / "stream.log"
    done = subprocess.run(
        ["sftp", "-b", "batch", "-D", str(relay)],
        cwd=local,
        env={**os.environ, "SFTP_ROOT": str(served), "SFTP_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (local / "back.bin").read_bytes() == (local / "local.bin").read_bytes()
    raw, chunks, at = log.read_bytes(), [], 0
    while at < len(raw):
        (n,) = struct.unpack(">I", raw[at + 1 : at + 5])
        chunks.append((raw[at : at + 1].decode(), raw[at + 5 : at + 5 + n]))
        at += 5 + n
    return Capture(chunks, str(served))


def rechunked(chunks: list[tuple[str, bytes]], rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """The same two streams in the same order, cut at random places (down to single bytes)."""
    for side, data in chunks:
        at = 0
        while at < len(data):
            n = rng.choice([1, 2, 3, 7, 100, 4096, 70_000])
            yield side, data[at : at + n]
            at += n


def track(chunks: Iterator[tuple[str, bytes]] | list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    tracker = SftpTracker()
    ops: list[dict[str, Any]] = []
    for side, data in chunks:
        ops += tracker.from_client(data) if side == "c" else tracker.from_server(data)
    return ops + tracker.finish()


def test_a_real_sftp_session_is_recorded_as_what_it_did(capture: Capture) -> None:
    ops = track(capture.chunks)
    root = capture.served

    def find(op: str, **fields: Any) -> list[dict[str, Any]]:
        return [o for o in ops if o["op"] == op and all(o.get(k) == v for k, v in fields.items())]

    a, b, remote = f"{root}/remote/a.bin", f"{root}/remote/b.bin", f"{root}/remote"
    assert ops[0] == {"op": "init", "version": 3}
    assert ops[1]["op"] == "version"
    assert "posix-rename@openssh.com" in ops[1]["extensions"]
    assert find("mkdir", path=remote, status="ok")
    (put,) = find("open", path=a, flags=["write", "creat", "trunc"], status="ok")
    (get,) = find("open", path=a, flags=["read"], status="ok")
    closes = find("close", path=a, kind="file", status="ok")
    assert [(c["written"], c["read"]) for c in closes] == [(SIZE, 0), (0, SIZE)]
    assert closes[0]["writes"] >= 3  # several writes, counted per handle
    assert closes[0]["handle"] == put["handle"]
    assert find("setstat", path=a, attrs={"permissions": "600"}, status="ok")
    (kept,) = find("fsetstat", path=f"{root}/remote/p.bin", status="ok")  # put -p: times kept
    assert {"atime", "mtime"} <= set(kept["attrs"])
    assert find("rename", old=a, new=b, status="ok")
    assert find("symlink", target="b.bin", link=f"{root}/remote/link", status="ok")
    (listing,) = find("close", kind="dir", status="ok")
    assert listing["path"].rstrip("/") == remote
    assert listing["entries"] >= 2
    assert find("opendir", status="ok", handle=listing["handle"])
    assert find("remove", path=f"{root}/remote/nosuch", status="no_such_file", message="No such file")
    assert find("remove", path=b, status="ok")
    assert find("remove", path=f"{root}/remote/link", status="ok")
    assert find("rmdir", path=remote, status="ok")
    assert find("realpath", path=".", result=root, status="ok")
    assert find("stat", path=a, status="ok")
    assert get["handle"]  # handles are hex of the server's opaque bytes
    assert not find("malformed")
    assert not find("unparseable")
    assert all(o.get("status") not in {"unanswered", "not_closed"} for o in ops)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_operations_do_not_depend_on_how_the_stream_was_cut(capture: Capture, seed: int) -> None:
    assert track(rechunked(capture.chunks, random.Random(seed))) == track(capture.chunks)


def test_the_recorder_writes_the_operations_and_never_the_files_contents(
    capture: Capture, tmp_path: Path
) -> None:
    session = SessionRecordings(tmp_path, "s-00000000000000aa")
    recorder = session.sftp(1, timestamp=1_764_000_000.0)
    for i, (side, data) in enumerate(rechunked(capture.chunks, random.Random(9))):
        (recorder.from_client if side == "c" else recorder.from_server)(i / 1000, data)
    facts = recorder.close()
    content = (tmp_path / facts.file).read_bytes()
    assert MARKER not in content
    header, *ops, last = [json.loads(line) for line in content.decode().splitlines()]
    assert header == {"version": 1, "kind": "sftp", "timestamp": 1_764_000_000.0}
    assert [o["t"] for o in ops] == sorted(o["t"] for o in ops)
    assert [{k: v for k, v in o.items() if k != "t"} for o in ops] == track(capture.chunks)
    sent = sum(len(d) for side, d in capture.chunks if side == "c")
    answered = sum(len(d) for side, d in capture.chunks if side == "s")
    assert last == {"bytes": {"from_client": sent, "from_server": answered}, "unparseable": None}
    assert not facts.truncated


def uint32(n: int) -> bytes:
    return struct.pack(">I", n)


def string(data: bytes) -> bytes:
    return uint32(len(data)) + data


def packet(kind: int, *fields: bytes) -> bytes:
    body = bytes([kind]) + b"".join(fields)
    return uint32(len(body)) + body


def test_symlink_takes_openssh_s_order_and_statuses_are_named(tmp_path: Path) -> None:
    tracker = SftpTracker()
    tracker.from_client(packet(wire.SYMLINK, uint32(5), string(b"target"), string(b"link")))
    tracker.from_client(packet(wire.MKDIR, uint32(6), string(b"d"), uint32(0)))
    tracker.from_client(packet(wire.RMDIR, uint32(7), string(b"\xffname")))
    ops = tracker.from_server(
        packet(wire.STATUS, uint32(6), uint32(3), string(b"Permission denied"), string(b""))
        + packet(wire.STATUS, uint32(5), uint32(0), string(b"Success"), string(b""))
        + packet(wire.STATUS, uint32(7), uint32(42), string(b"?"), string(b""))
    )
    assert ops == [
        {"op": "mkdir", "path": "d", "status": "permission_denied", "message": "Permission denied"},
        {"op": "symlink", "target": "target", "link": "link", "status": "ok"},
        {"op": "rmdir", "path": "\udcffname", "status": "code 42", "message": "?"},
    ]
    session = SessionRecordings(tmp_path, "s-00000000000000bb")
    recorder = session.sftp(0, timestamp=0.0)
    recorder.from_client(0.0, packet(wire.REMOVE, uint32(1), string(b"caf\xe9")))
    recorder.from_server(0.1, packet(wire.STATUS, uint32(1), uint32(0), string(b""), string(b"")))
    facts = recorder.close()
    line = (tmp_path / facts.file).read_text().splitlines()[1]
    assert "\\udce9" in line  # a name that is not UTF-8 is kept, byte for byte
    assert json.loads(line)["path"].encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_an_oversized_packet_makes_the_stream_unparseable_and_nothing_more_is_buffered() -> None:
    tracker = SftpTracker()
    assert tracker.from_client(packet(wire.INIT, uint32(3))) == [{"op": "init", "version": 3}]
    ops = tracker.from_client(uint32(wire.MAX_PACKET + 1) + b"x" * 1000)
    assert ops == [
        {
            "op": "unparseable",
            "from": "client",
            "why": "a packet of 262145 bytes (at most 262144 are accepted)",
        }
    ]
    for _ in range(40):
        assert tracker.from_client(os.urandom(256 * 1024)) == []
        assert tracker.from_server(os.urandom(1000)) == []
    assert tracker.bytes_from_client == 4 + 5 + 4 + 1000 + 40 * 256 * 1024
    assert tracker.bytes_from_server == 40_000
    assert tracker.unparseable is not None


def test_a_partial_packet_is_buffered_up_to_one_packet_at_most() -> None:
    reader = wire.PacketReader()
    assert reader.feed(uint32(wire.MAX_PACKET) + bytes([wire.DATA])) == []
    rest = wire.MAX_PACKET - 1
    while rest > 100_000:
        assert reader.feed(b"z" * 100_000) == []
        assert reader.buffered <= 4 + wire.MAX_PACKET
        rest -= 100_000
    (whole,) = reader.feed(b"z" * rest + b"\x00\x00")
    assert (whole.type, len(whole.payload)) == (wire.DATA, wire.MAX_PACKET - 1)
    assert reader.buffered == 2
    assert reader.broken is None


def test_a_malformed_packet_is_recorded_and_the_stream_goes_on() -> None:
    tracker = SftpTracker()
    broken = packet(wire.OPEN, uint32(1), uint32(1000), b"short")  # a name longer than the packet
    ops = tracker.from_client(broken + packet(wire.STAT, uint32(2), string(b"/etc")))
    assert ops == [
        {"op": "malformed", "from": "client", "type": wire.OPEN, "why": "the packet ends inside a field"}
    ]
    assert tracker.from_server(packet(wire.ATTRS, uint32(2), uint32(0))) == [
        {"op": "stat", "path": "/etc", "status": "ok"}
    ]
    assert tracker.from_server(packet(wire.STATUS, uint32(99), uint32(0))) == [
        {"op": "unexpected_answer", "id": 99, "kind": "status"}
    ]


def test_requests_never_answered_are_bounded_and_given_at_the_end() -> None:
    tracker = SftpTracker()
    early = []
    for i in range(MAX_PENDING + 500):
        early += tracker.from_client(packet(wire.STAT, uint32(i), string(b"p")))
    assert len(early) == 500
    assert {o["status"] for o in early} == {"unanswered (too many requests at once)"}
    late = tracker.finish()
    assert len(late) == MAX_PENDING
    assert {o["status"] for o in late} == {"unanswered"}
    assert tracker.finish() == []


def test_a_handle_never_closed_is_given_with_its_totals_at_the_end() -> None:
    tracker = SftpTracker()
    tracker.from_client(packet(wire.OPEN, uint32(1), string(b"/f"), uint32(2), uint32(0)))
    tracker.from_server(packet(wire.HANDLE, uint32(1), string(b"\x00\x01")))
    tracker.from_client(packet(wire.WRITE, uint32(2), string(b"\x00\x01"), b"\x00" * 8, string(b"secret")))
    tracker.from_server(packet(wire.STATUS, uint32(2), uint32(0), string(b""), string(b"")))
    assert tracker.finish() == [
        {
            "op": "close",
            "kind": "file",
            "path": "/f",
            "handle": "0001",
            "read": 0,
            "written": 6,
            "reads": 0,
            "writes": 1,
            "errors": 0,
            "status": "not_closed",
        }
    ]


CHUNKS = st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(stream=CHUNKS, prefix=st.sampled_from([b"", packet(wire.INIT, uint32(3))]))
def test_any_bytes_at_all_are_parsed_without_a_crash(stream: list[tuple[bool, bytes]], prefix: bytes) -> None:
    tracker = SftpTracker()
    tracker.from_client(prefix)
    for from_client, data in stream:
        ops = tracker.from_client(data) if from_client else tracker.from_server(data)
        json.dumps(ops)  # every operation is a JSON line
    json.dumps(tracker.finish())


@settings(max_examples=200, deadline=None)
@given(kind=st.integers(0, 255), body=st.binary(max_size=200))
def test_any_packet_in_a_well_framed_stream_decodes_or_is_malformed(kind: int, body: bytes) -> None:
    tracker = SftpTracker()
    framed = packet(kind, body)
    json.dumps(tracker.from_client(framed) + tracker.from_server(framed) + tracker.finish())
    assert tracker.unparseable is None
