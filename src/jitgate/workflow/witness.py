"""Sending the signed audit head to witnesses outside the broker, in the background.

The scheduler offers the current head (checked: signed, and not behind any head seen) after each
pass; a thread of its own sends it to every witness when it changed and at least once per
interval. A witness that fails is retried with backoff, counted (``status``, shown at
``/metrics``) and logged; nothing waits on a witness. The line format and the checking side are
in ``audit/witness.py``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from jitgate.audit import witness
from jitgate.audit.head import SignedHead
from jitgate.clock import Clock
from jitgate.errors import InvalidInput
from jitgate.workflow.notify import signature

log = logging.getLogger("jitgate.witness")
RETRY_FIRST_SECONDS = 1.0


class Witness(Protocol):
    name: str

    def send(self, text: str) -> None:
        """Deliver one witnessed line; raise ``OSError`` or ``httpx.HTTPError`` if it did not arrive."""

    def close(self) -> None: ...


class FileWitness:
    """Appends each line to a private file (0600), synced to disk before it counts as sent."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self._path = path

    def send(self, text: str) -> None:
        # One write of one short line with O_APPEND: lines from several processes never interleave.
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (text + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        pass


class WebhookWitness:
    """POSTs each line as JSON, HMAC-signed like the broker's other webhooks; a non-2xx is a failure."""

    def __init__(self, url: str, secret: str | None, *, timeout: float = 5.0) -> None:
        self.name = url
        self._secret = secret
        self._client = httpx.Client(timeout=timeout)

    def send(self, text: str) -> None:
        body = text.encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Jitgate-Timestamp": timestamp}
        if self._secret:
            headers["X-Jitgate-Signature"] = signature(self._secret, body, timestamp)
        self._client.post(self.name, content=body, headers=headers).raise_for_status()

    def close(self) -> None:
        self._client.close()


class _RaisingSysLogHandler(logging.handlers.SysLogHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        raise  # noqa: PLE0704 - called from inside emit's except block: let the caller count it


class SyslogWitness:
    """Sends each line to syslog (facility AUTH): ``syslog:`` locally, ``syslog://host:port`` by UDP."""

    def __init__(self, spec: str) -> None:
        self.name = spec
        if spec == witness.SYSLOG:
            local = Path("/dev/log")
            address: str | tuple[str, int] = str(local) if local.exists() else ("localhost", 514)
        else:
            parts = urlsplit(spec)
            if not parts.hostname:
                raise InvalidInput(f"audit witness {spec!r}: expected syslog: or syslog://host:port")
            address = (parts.hostname, parts.port or 514)
        self._handler = _RaisingSysLogHandler(
            address, facility=logging.handlers.SysLogHandler.LOG_AUTH, socktype=socket.SOCK_DGRAM
        )

    def send(self, text: str) -> None:
        record = logging.LogRecord(
            "jitgate", logging.WARNING, __file__, 0, "jitgate-audit-head %s", (text,), None
        )
        self._handler.emit(record)

    def close(self) -> None:
        self._handler.close()


def parse(spec: str, data_dir: Path, secret: str | None) -> Witness:
    """The witness a ``JITGATE_AUDIT_WITNESS`` entry names; ``InvalidInput`` if it is unusable."""
    witness.check_spec(spec, data_dir)
    if spec.startswith(("http://", "https://")):
        return WebhookWitness(spec, secret)
    if spec.startswith(witness.SYSLOG):
        return SyslogWitness(spec)
    path = witness.file_path(spec)
    if path is None:  # unreachable: every other spec is a file
        raise InvalidInput(f"audit witness {spec!r} is not a file, URL or syslog address")
    return FileWitness(path)


@dataclass
class WitnessStatus:
    name: str
    sent: int = 0
    failures: int = 0
    last_error: str = ""


class WitnessSender:
    """One background thread sending the newest offered head to every witness."""

    def __init__(
        self, witnesses: list[Witness], public_key: Ed25519PublicKey, clock: Clock, *, interval: float
    ) -> None:
        self._witnesses = witnesses
        self._public = public_key
        self._clock = clock
        self._interval = interval
        self._head: SignedHead | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._status = [WitnessStatus(w.name) for w in witnesses]
        self._thread: threading.Thread | None = None

    def offer(self, head: SignedHead) -> None:
        """Hand over the current head; returns at once."""
        with self._lock:
            changed = head != self._head
            self._head = head
        if changed:
            self._wake.set()

    def status(self) -> list[WitnessStatus]:
        with self._lock:
            return [WitnessStatus(s.name, s.sent, s.failures, s.last_error) for s in self._status]

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="jitgate-witness", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for target in self._witnesses:
            target.close()

    def _run(self) -> None:
        count = len(self._witnesses)
        sent: list[SignedHead | None] = [None] * count
        failing = [False] * count
        next_at = [0.0] * count  # failing: the next retry; else: the next periodic resend
        delay = [RETRY_FIRST_SECONDS] * count
        while not self._stopping.is_set():
            self._wake.clear()
            with self._lock:
                head = self._head
            if head is None:
                self._wake.wait(self._interval)
                continue
            for i, target in enumerate(self._witnesses):
                now = time.monotonic()
                waiting = failing[i] or head == sent[i]
                if waiting and now < next_at[i]:
                    continue
                try:
                    target.send(witness.line(head, self._public, self._clock.now()))
                except (OSError, httpx.HTTPError) as exc:
                    with self._lock:
                        self._status[i].failures += 1
                        self._status[i].last_error = f"{type(exc).__name__}: {exc}"[:200]
                    log.warning("audit witness %s failed, retrying in %.0fs: %s", target.name, delay[i], exc)
                    failing[i], next_at[i] = True, now + delay[i]
                    delay[i] = min(delay[i] * 2, self._interval)
                    continue
                with self._lock:
                    self._status[i].sent += 1
                failing[i], sent[i], next_at[i] = False, head, now + self._interval
                delay[i] = RETRY_FIRST_SECONDS
            soonest = min(next_at, default=time.monotonic() + self._interval) - time.monotonic()
            self._wake.wait(min(max(soonest, 0.05), self._interval))
