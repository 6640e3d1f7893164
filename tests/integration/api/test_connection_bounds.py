"""One client cannot make a real broker process unreachable: idle, slow and oversized connections
are bounded in number, time and size, the descriptor limit is raised at start, and meanwhile
``/healthz`` answers and the scheduler ends grants."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.broker_process import Process, broker

IDLE = 2000
SLOW = 40
HEADER_TIMEOUT = 6.0
BODY_TIMEOUT = 3.0


@pytest.fixture
def bounded(tmp_path: Path) -> Iterator[Process]:
    """Started with a soft descriptor limit of 1024: fewer than the flood needs, unless raised."""
    env = {
        "JITGATE_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "JITGATE_HTTP_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "JITGATE_SCHEDULER_POLL_SECONDS": "0.5",
    }
    with broker(tmp_path, env, soft_nofile=1024) as process:
        yield process


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has answered and closed, or reset, this connection (never blocks)."""
    sock.settimeout(0)
    while True:
        try:
            if not sock.recv(65536):
                return True
        except BlockingIOError:
            return False
        except OSError:
            return True


def trickle(sock: socket.socket, byte: bytes) -> bool:
    try:
        sock.send(byte)
    except OSError:
        return False
    return True


def trickle_until_cut(
    pending: dict[str, list[socket.socket]], began: dict[str, float], cut: dict[str, float]
) -> None:
    """Send one more byte of head or body on each slow connection every 0.2 s until the server
    has cut every one of a group; note when, from the group's start, in ``cut``."""
    deadline = time.monotonic() + HEADER_TIMEOUT + 10
    while pending and time.monotonic() < deadline:
        for kind, socks in list(pending.items()):
            byte = b"" if kind == "idle" else b"x"
            alive = [s for s in socks if trickle(s, byte) and not closed_by_server(s)]
            if alive:
                pending[kind] = alive
            else:
                cut[kind] = time.monotonic() - began[kind]
                del pending[kind]
        time.sleep(0.2)


def healthz_seconds(url: str) -> float:
    start = time.monotonic()
    answer = httpx.get(f"{url}/healthz", timeout=10)
    assert answer.status_code == 200
    return time.monotonic() - start


def test_a_flood_of_idle_and_slow_connections_is_cut_while_healthz_and_expiry_go_on(
    bounded: Process,
) -> None:
    auth = {"Authorization": f"Bearer {bounded.token}"}
    grant = httpx.post(
        f"{bounded.url}/api/v1/requests", json={"role": "stage-shell", "duration": "2s"}, headers=auth
    ).json()
    assert grant["state"] == "ACTIVE"

    began: dict[str, float] = {"idle": time.monotonic()}
    idle = [bounded.connect() for _ in range(IDLE)]
    began["head"] = time.monotonic()
    slow_head = [bounded.connect() for _ in range(SLOW)]
    for sock in slow_head:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    began["body"] = time.monotonic()
    slow_body = [bounded.connect() for _ in range(SLOW)]
    head = b"POST /api/v1/requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    for sock in slow_body:
        sock.sendall(head + b"Content-Length: 100000\r\n\r\n{")
    flood_started = time.monotonic()
    cut: dict[str, float] = {}
    pending = {"head": slow_head, "body": slow_body, "idle": idle[-100:]}
    trickling = threading.Thread(target=trickle_until_cut, args=(pending, began, cut))
    trickling.start()

    # All held at once, past the soft limit the process was started with.
    while bounded.descriptors() < IDLE + 2 * SLOW and time.monotonic() - flood_started < BODY_TIMEOUT:
        time.sleep(0.05)
    assert bounded.descriptors() > IDLE + 2 * SLOW
    latencies = [healthz_seconds(bounded.url) for _ in range(5)]
    assert max(latencies) < 2.0, latencies

    state = "ACTIVE"
    while state == "ACTIVE" and time.monotonic() - began["idle"] < HEADER_TIMEOUT - 1:
        state = httpx.get(f"{bounded.url}/api/v1/requests/{grant['id']}", headers=auth).json()["state"]
        time.sleep(0.1)
    assert state == "EXPIRED"
    assert not any(closed_by_server(s) for s in idle[:50])  # the flood was still on

    trickling.join(timeout=HEADER_TIMEOUT + 15)
    assert not pending, f"never cut by the server: {sorted(pending)}"
    # Each group was cut after its bound (counted from before its first connect), not long after.
    assert BODY_TIMEOUT <= cut["body"] <= BODY_TIMEOUT + 3, cut
    assert HEADER_TIMEOUT <= cut["head"] <= HEADER_TIMEOUT + 3, cut
    assert HEADER_TIMEOUT <= cut["idle"] <= HEADER_TIMEOUT + 5, cut

    for sock in idle + slow_head + slow_body:
        sock.close()
    assert healthz_seconds(bounded.url) < 2.0


def test_connections_beyond_the_cap_are_answered_503_at_once_and_healthz_returns_when_they_go(
    tmp_path: Path,
) -> None:
    with broker(tmp_path, {"JITGATE_HTTP_MAX_CONNECTIONS": "50"}) as process:
        held = [process.connect() for _ in range(50)]
        with process.connect() as refused:
            refused.settimeout(5)
            answer = refused.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"application/problem+json" in answer
        assert process.descriptors() < 50 + 60
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"{process.url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the broker did not take connections again"
            time.sleep(0.1)


def test_a_request_head_over_the_size_limit_is_answered_431_and_closed(tmp_path: Path) -> None:
    with broker(tmp_path, {"JITGATE_HTTP_MAX_HEADER_BYTES": "8192"}) as process:
        with process.connect() as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: ")
            sock.settimeout(0)
            answer = b""
            for _ in range(64):  # up to 64 KiB of one header value, a kilobyte at a time
                try:
                    answer = sock.recv(65536)
                    break
                except BlockingIOError:
                    sock.send(b"a" * 1024)
                    time.sleep(0.01)
            sock.settimeout(5)
            while not answer.endswith(b"}") and (chunk := sock.recv(65536)):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        fits = httpx.get(f"{process.url}/healthz", headers={"X-Padding": "a" * 4000})
        assert fits.status_code == 200
