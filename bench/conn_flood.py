"""A connection flood from one client against a real ``jitgate server``: thousands of idle
connections plus slow-header and slow-body ones, all from loopback.

Prints how many connections the broker held, ``/healthz`` latency (p50/p99, fresh connection each
time) during the flood, the broker's descriptors in use, how long each kind of slow connection
lived before the broker cut it, and how late a grant ended while the flood was on. The peer is
the same app on uvicorn's defaults (no head deadline, no cap), flooded the same way. Both start
with a soft descriptor limit of 1024 and the machine's hard limit, as under a default service unit.

Run: .venv/bin/python bench/conn_flood.py [--connections 10000] [--slow 200]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from common import JITGATE, free_port, percentiles, wait_healthy

POLICY = """
targets:
  - {name: stage-1, kind: ssh, address: 127.0.0.1}
roles:
  - name: stage-shell
    targets: {names: [stage-1]}
    ssh: {logins: [deploy]}
    min_duration: 1s
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
"""
HEADER_TIMEOUT = 10.0  # the defaults
BODY_TIMEOUT = 30.0
SOFT_NOFILE = 1024
PEER = """
import sys, uvicorn
from jitgate.api.app import create_app
from jitgate.runtime import build_runtime
from jitgate.settings import Settings
uvicorn.run(create_app(build_runtime(Settings())), host="127.0.0.1", port=int(sys.argv[1]),
            access_log=False, log_level="warning")
"""


@contextmanager
def server(tmp: Path, *, peer: bool, max_connections: int) -> Iterator[tuple[str, int, str]]:
    """A broker (or the peer) on a fresh data directory; yields (url, pid, alice's token)."""
    data = tmp / ("peer" if peer else "broker")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    added = subprocess.run(
        [*JITGATE, "users", "add", "alice", "--group=engineers", "--data-dir", str(data), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    token = json.loads(added.stdout)["token"]
    port = free_port()
    env = {
        **os.environ,
        "JITGATE_DATA_DIR": str(data),
        "JITGATE_POLICY_FILE": str(policy),
        "JITGATE_HTTP_MAX_CONNECTIONS": str(max_connections),
        "JITGATE_SCHEDULER_POLL_SECONDS": "1",
    }
    argv = (
        [sys.executable, "-c", PEER, str(port)]
        if peer
        else [*JITGATE, "server", "--listen", f"127.0.0.1:{port}", "--no-access-log"]
    )
    process = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=soft_limit,  # noqa: PLW1509 - sets one rlimit, no threads involved
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url, process.pid, token
    finally:
        process.terminate()
        process.wait(timeout=30)


def soft_limit() -> None:
    """Start servers as a default service unit would: soft descriptor limit 1024, hard limit high."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT_NOFILE, hard))


def descriptors(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def connect(port: int) -> socket.socket | None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return None
    sock.settimeout(0)
    return sock


def cut_by_server(sock: socket.socket) -> bool:
    while True:
        try:
            if not sock.recv(65536):
                return True
        except BlockingIOError:
            return False
        except OSError:
            return True


def flood(url: str, pid: int, token: str, *, connections: int, slow: int, watch: float) -> dict[str, object]:
    port = int(url.rsplit(":", 1)[1])
    auth = {"Authorization": f"Bearer {token}"}
    grant = httpx.post(f"{url}/api/v1/requests", json={"role": "stage-shell", "duration": "3s"}, headers=auth)
    grant_id, expires = grant.json()["id"], grant.json()["grant"]["expires_at"]
    opened = time.monotonic()
    idle = [s for s in (connect(port) for _ in range(connections)) if s is not None]
    heads = [s for s in (connect(port) for _ in range(slow)) if s is not None]
    bodies = [s for s in (connect(port) for _ in range(slow)) if s is not None]
    for sock in heads:
        sock.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    for sock in bodies:
        sock.send(b"POST /api/v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
    started = time.monotonic()
    groups = {"idle": idle, "slow head": heads, "slow body": bodies}
    lived: dict[str, list[float]] = {kind: [] for kind in groups}
    latencies: list[float] = []
    failed = 0
    most_descriptors = 0
    expired_lag: float | None = None
    stop = threading.Event()

    def trickle() -> None:
        alive = {kind: list(socks) for kind, socks in groups.items()}
        while not stop.is_set() and any(alive.values()):
            for kind, socks in alive.items():
                still = []
                for sock in socks:
                    try:
                        if kind != "idle":
                            sock.send(b"x")
                        gone = cut_by_server(sock)
                    except OSError:
                        gone = True
                    if gone:
                        lived[kind].append(time.monotonic() - started)
                    else:
                        still.append(sock)
                alive[kind] = still
            stop.wait(1.0)

    trickler = threading.Thread(target=trickle)
    trickler.start()
    while time.monotonic() - started < watch:
        most_descriptors = max(most_descriptors, descriptors(pid))
        begin = time.monotonic()
        try:
            httpx.get(f"{url}/healthz", timeout=5).raise_for_status()
            latencies.append(time.monotonic() - begin)
        except httpx.HTTPError:
            failed += 1
        if expired_lag is None:
            try:
                shown = httpx.get(f"{url}/api/v1/requests/{grant_id}", headers=auth, timeout=5).json()
                if shown["state"] == "EXPIRED":
                    end = datetime.fromisoformat(expires.replace("Z", "+00:00"))
                    expired_lag = (datetime.now(UTC) - end).total_seconds()
            except (httpx.HTTPError, ValueError):
                pass
        time.sleep(0.1)
    stop.set()
    trickler.join()
    for socks in groups.values():
        for sock in socks:
            sock.close()
    return {
        "held": len(idle) + len(heads) + len(bodies),
        "open_seconds": started - opened,
        "latencies": latencies,
        "failed": failed,
        "descriptors": most_descriptors,
        "lived": lived,
        "expired_lag": expired_lag,
    }


def report(name: str, result: dict[str, object]) -> None:
    latencies = result["latencies"]
    assert isinstance(latencies, list)
    lived = result["lived"]
    assert isinstance(lived, dict)
    print(f"{name}")
    print(f"  connections opened by the client{result['held']:>8} (in {result['open_seconds']:.1f} s)")
    print(f"  broker descriptors in use, max   {result['descriptors']:>8}")
    if latencies:
        p50, p99 = percentiles(latencies)
        print(
            f"  /healthz during the flood        p50 {p50 * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms"
            f"   ({len(latencies)} answered, {result['failed']} failed)"
        )
    else:
        print(f"  /healthz during the flood        never answered ({result['failed']} failed)")
    for kind, times in lived.items():
        if times:
            ordered = sorted(times)
            print(
                f"  {kind:<11} cut after             min {ordered[0]:5.1f} s  max {ordered[-1]:5.1f} s"
                f"   ({len(times)} cut)"
            )
        else:
            print(f"  {kind:<11} cut after             never (within the run)")
    lag = result["expired_lag"]
    print(
        "  grant of 3 s ended                "
        + (f"{lag:.1f} s after its expiry" if isinstance(lag, float) else "not seen during the run")
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--slow", type=int, default=200)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    watch = BODY_TIMEOUT + 3
    cap = args.connections + 2 * args.slow + 100
    print(f"{args.connections} idle + {args.slow} slow-head + {args.slow} slow-body connections, one worker")
    print(f"broker: JITGATE_HTTP_MAX_CONNECTIONS={cap}, other bounds default")
    print(f"both started with descriptor limits soft {SOFT_NOFILE}, hard {hard}; times from the flood open\n")
    with tempfile.TemporaryDirectory(prefix="jitgate-bench-") as tmp:
        for name, peer in [("jitgate server", False), ("peer: the same app on uvicorn's defaults", True)]:
            with server(Path(tmp), peer=peer, max_connections=cap) as (url, pid, token):
                result = flood(url, pid, token, connections=args.connections, slow=args.slow, watch=watch)
            report(name, result)
            print()


if __name__ == "__main__":
    main()
