"""A real ``jitgate server`` process for tests that talk to it over raw sockets and HTTP."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

JITGATE = [sys.executable, "-m", "jitgate"]
POLICY = """
targets:
  - {name: stage-1, kind: ssh, address: 127.0.0.1, labels: {env: stage}}
roles:
  - name: stage-shell
    targets: {labels: {env: stage}}
    ssh: {logins: [deploy]}
    min_duration: 1s
    max_duration: 30m
    requesters: [group:engineers]
    approval: auto
"""


@dataclass
class Process:
    url: str
    port: int
    pid: int
    token: str
    admin_token: str
    log: Path

    def descriptors(self) -> int:
        return sum(1 for _ in Path(f"/proc/{self.pid}/fd").iterdir())

    def connect(self, source: str = "127.0.0.1") -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10, source_address=(source, 0))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def broker(tmp_path: Path, env: dict[str, str], *, soft_nofile: int | None = None) -> Iterator[Process]:
    """``jitgate server`` with ``env`` added; ``soft_nofile`` starts it with that soft descriptor limit."""
    data = tmp_path / "data"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    tokens = {}
    for name, flags in {"alice": ["--group=engineers"], "admin": ["--admin"]}.items():
        added = subprocess.run(
            [*JITGATE, "users", "add", name, *flags, "--data-dir", str(data), "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        tokens[name] = json.loads(added.stdout)["token"]

    def limit_descriptors() -> None:
        if soft_nofile is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft_nofile, hard))

    log = tmp_path / "server.log"
    with serving(data, policy, log, env, preexec=limit_descriptors) as (url, port, server):
        yield Process(url, port, server.pid, tokens["alice"], tokens["admin"], log)


@contextmanager
def serving(
    data: Path,
    policy: Path,
    log: Path,
    env: dict[str, str],
    *,
    preexec: Callable[[], None] | None = None,
    port: int | None = None,
) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    """``jitgate server`` on a free loopback port (or ``port``), with ``env`` added, once ``/healthz``
    answers: yields its URL, port and process, and stops it afterwards."""
    port = port or free_port()
    listen = ["--listen", f"127.0.0.1:{port}", "--no-access-log"]
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [*JITGATE, "server", "--data-dir", str(data), "--policy", str(policy), *listen],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            env={**os.environ, **env},
            preexec_fn=preexec,  # noqa: PLW1509 - sets one rlimit, no threads involved
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                pytest.fail("server did not start: " + log.read_text())
            time.sleep(0.1)  # polling for the server to come up
        yield url, port, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
