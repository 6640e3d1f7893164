"""Signed audit heads reach their witnesses: a real HTTP receiver (HMAC-signed POSTs), a real UDP
syslog receiver and a file outside the data directory; failures are retried and counted, and a
witness never holds anything up."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jitgate.audit import keys
from jitgate.audit.chain import AuditLog
from jitgate.audit.head import SignedHead
from jitgate.clock import FrozenClock
from jitgate.errors import InvalidInput
from jitgate.runtime import audit_witnesses
from jitgate.settings import Settings
from jitgate.workflow.witness import WitnessSender

SECRET = "witness-test-secret"
Received = queue.Queue[tuple[dict[str, str], bytes]]


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    """An HTTP receiver that answers the first POST with 503 and the rest with 204."""
    got: Received = queue.Queue()
    answered = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answered.append(body)
            status = 503 if len(answered) == 1 else 204
            if status == 204:
                got.put((dict(self.headers), body))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/heads", got
    server.shutdown()
    server.server_close()


@pytest.fixture
def syslog_receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock
    sock.close()


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(keys.load_for(tmp_path / "data"))


def signed_head(audit: AuditLog, seq: int) -> SignedHead:
    """A head as the broker signs it (the private key is the audit log's own)."""
    from jitgate.audit.canonical import head_message

    digest = hashlib.sha256(str(seq).encode()).hexdigest()
    return SignedHead(seq, digest, audit._key.sign(head_message(seq, digest)).hex())


def sender(tmp_path: Path, audit: AuditLog, *specs: str, seconds: float = 60) -> WitnessSender:
    settings = Settings(
        data_dir=tmp_path / "data",
        audit_witness=",".join(specs),  # type: ignore[arg-type]  # as it comes from the environment
        audit_witness_seconds=seconds,
        audit_witness_secret=SECRET,  # type: ignore[arg-type]
    )
    found = audit_witnesses(settings, audit, FrozenClock(datetime(2026, 3, 1, tzinfo=UTC)))
    assert found is not None
    return found


def wait_for(what: str, done: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_webhook_witness_gets_hmac_signed_heads_and_a_failure_is_retried_and_counted(
    tmp_path: Path, audit: AuditLog, receiver: tuple[str, Received]
) -> None:
    url, got = receiver
    witnesses = sender(tmp_path, audit, url)
    witnesses.start()
    try:
        witnesses.offer(signed_head(audit, 7))
        headers, body = got.get(timeout=15)  # the first POST was refused; the retry arrives
        expected = hmac.new(
            SECRET.encode(), headers["X-Jitgate-Timestamp"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        assert hmac.compare_digest(headers["X-Jitgate-Signature"], "sha256=" + expected)
        line = json.loads(body)
        assert SignedHead(line["seq"], line["hash"], line["signature"]).signed_by(audit.public_key)
        assert line["seq"] == 7
        wait_for("the sent count", lambda: witnesses.status()[0].sent == 1)
        (status,) = witnesses.status()
        assert (status.name, status.failures) == (url, 1)
        assert "503" in status.last_error
        witnesses.offer(signed_head(audit, 8))  # a new head goes out at once, not at the next period
        assert json.loads(got.get(timeout=10)[1])["seq"] == 8
    finally:
        witnesses.stop()


def test_a_syslog_witness_sends_each_head_to_a_udp_receiver(
    tmp_path: Path, audit: AuditLog, syslog_receiver: socket.socket
) -> None:
    port = syslog_receiver.getsockname()[1]
    witnesses = sender(tmp_path, audit, f"syslog://127.0.0.1:{port}")
    witnesses.start()
    try:
        witnesses.offer(signed_head(audit, 3))
        datagram = syslog_receiver.recv(65536).decode()
    finally:
        witnesses.stop()
    assert datagram.startswith("<36>")  # facility auth (4) * 8 + warning (4)
    line = json.loads(datagram.split("jitgate-audit-head ", 1)[1].rstrip("\x00"))
    assert SignedHead(line["seq"], line["hash"], line["signature"]).signed_by(audit.public_key)


def test_a_file_witness_appends_private_lines_and_retries_until_its_directory_is_there(
    tmp_path: Path, audit: AuditLog
) -> None:
    heads = tmp_path / "mnt" / "witness" / "heads.jsonl"  # the mount is not there yet
    witnesses = sender(tmp_path, audit, str(heads), seconds=0.2)
    witnesses.start()
    try:
        witnesses.offer(signed_head(audit, 1))
        wait_for("a failed attempt", lambda: witnesses.status()[0].failures >= 1)
        assert not heads.exists()
        heads.parent.mkdir(parents=True)
        wait_for("the head in the file", lambda: heads.exists() and heads.read_text().count("\n") >= 1)
        witnesses.offer(signed_head(audit, 2))
        wait_for("the second head", lambda: '"seq":2' in heads.read_text())
    finally:
        witnesses.stop()
    seqs = [json.loads(line)["seq"] for line in heads.read_text().splitlines()]
    assert seqs[0] == 1
    assert 2 in seqs
    assert stat.S_IMODE(heads.stat().st_mode) == 0o600


def test_several_witnesses_come_from_one_comma_separated_setting(
    tmp_path: Path, audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JITGATE_AUDIT_WITNESS", f"{tmp_path}/w.jsonl, https://witness.example/heads,syslog:")
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.audit_witness == [f"{tmp_path}/w.jsonl", "https://witness.example/heads", "syslog:"]
    witnesses = sender(tmp_path, audit, *settings.audit_witness)
    witnesses.stop()  # never started: closes its sockets
    assert [s.name for s in witnesses.status()] == settings.audit_witness


@pytest.mark.parametrize(
    ("spec", "words"),
    [("data/keys/heads.jsonl", "absolute path"), ("{data}/heads.jsonl", "inside the data directory")],
)
def test_a_witness_file_must_be_outside_the_data_directory(
    tmp_path: Path, audit: AuditLog, spec: str, words: str
) -> None:
    with pytest.raises(InvalidInput, match=words):
        sender(tmp_path, audit, spec.format(data=tmp_path / "data"))
