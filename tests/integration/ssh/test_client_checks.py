"""The client does not trust the broker's answer, and a signal never leaves the session key behind.

The broker here is a real HTTP server on loopback that answers what each test tells it to: an
address carrying a ``ProxyCommand``, a certificate bound to another target, or no answer at all
until released (the moment before ``ssh`` starts, when the session key already lies on disk).
The ``jitgate`` CLI runs as a real process with ``ssh-keygen`` making its key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from support.broker import JITGATE

INJECTED = "ProxyCommand touch /tmp/jitgate-owned"


@dataclass
class FakeBroker:
    """Answers ``GET /api/v1/ssh/targets`` and ``POST /api/v1/ssh/certificates`` as told."""

    targets: list[dict[str, Any]] = field(default_factory=list)
    certificate: dict[str, Any] = field(default_factory=dict)
    hold: bool = False
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""


@pytest.fixture
def broker() -> Iterator[FakeBroker]:
    fake = FakeBroker()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.answer(200, fake.targets)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if fake.hold:
                fake.arrived.set()
                fake.release.wait(timeout=60)
            self.answer(201, fake.certificate)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@dataclass
class Client:
    tmp: Path
    url: str
    marker: Path

    @property
    def runtime(self) -> Path:
        return self.tmp / "run" / "jitgate"

    def env(self) -> dict[str, str]:
        """A PATH whose ``ssh`` only leaves a mark: these tests must never get as far as ssh."""
        fake_bin = self.tmp / "bin"
        fake_bin.mkdir(exist_ok=True)
        fake_ssh = fake_bin / "ssh"
        fake_ssh.write_text(f"#!/bin/sh\ntouch {self.marker}\n")
        fake_ssh.chmod(0o755)
        run = self.tmp / "run"
        run.mkdir(mode=0o700, exist_ok=True)
        return {
            **os.environ,
            "XDG_RUNTIME_DIR": str(run),
            "PATH": f"{fake_bin}:{os.environ['PATH']}",
            "JITGATE_URL": self.url,
            "JITGATE_TOKEN": "t0ken",
        }

    def argv(self, *args: str) -> list[str]:
        return [*JITGATE, *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), env=self.env(), capture_output=True, text=True, timeout=60, check=False
        )

    def left_on_disk(self) -> list[Path]:
        return sorted(self.runtime.rglob("*")) if self.runtime.exists() else []


@pytest.fixture
def client(broker: FakeBroker, tmp_path: Path) -> Client:
    return Client(tmp_path, broker.url, tmp_path / "ssh-ran")


def target(**changes: Any) -> dict[str, Any]:
    return {
        "name": "web-1",
        "address": "10.0.0.5",
        "port": 22,
        "logins": ["deploy"],
        "roles": ["r"],
        **changes,
    }


def certificate(**changes: Any) -> dict[str, Any]:
    return {
        "certificate": "ssh-ed25519-cert-v01@openssh.com AAAA jitgate-1",
        "grant_id": "g1",
        "serial": "1",
        "principals": ["deploy@web-1"],
        "logins": ["deploy"],
        "valid_after": "2026-12-01T00:00:00Z",
        "valid_before": "2026-12-01T00:05:00Z",
        "target": {"name": "web-1", "address": "10.0.0.5", "port": 22},
        "known_hosts": [],
        **changes,
    }


def only_error(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"address": f"10.0.0.5\n    {INJECTED}"}, "bad address"),
        ({"address": f"-o{INJECTED}"}, "bad address"),
        ({"address": "10.0.0.5 %h"}, "bad address"),
        ({"name": f"web-1\n{INJECTED}"}, "bad target name"),
        ({"port": f"22\n{INJECTED}"}, "bad port"),
        ({"port": 0}, "bad port"),
        ({"logins": [f"deploy\n{INJECTED}"]}, "bad login"),
    ],
)
def test_ssh_config_refuses_an_answer_that_would_add_a_proxy_command(
    broker: FakeBroker, client: Client, changes: dict[str, Any], error: str
) -> None:
    broker.targets = [target(**changes)]
    done = client.run("ssh-config")
    assert done.returncode == 3, done.stderr
    assert f"error: the broker sent a {error}: " in only_error(done)
    assert done.stdout == ""  # no half of a config to append to ~/.ssh/config


def test_ssh_config_prints_a_good_answer(broker: FakeBroker, client: Client) -> None:
    broker.targets = [target()]
    done = client.run("ssh-config")
    assert done.returncode == 0, done.stderr
    assert "    HostName 10.0.0.5\n    Port 22\n    User deploy\n" in done.stdout


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"target": {"name": "web-1", "address": f"10.0.0.5 -o{INJECTED}", "port": 22}}, "bad address"),
        ({"target": {"name": "web-1", "address": "10.0.0.5", "port": "22 -oX=y"}}, "bad port"),
        ({"principals": ["deploy@web-2"]}, "principal 'deploy@web-2' is not bound to target web-1"),
        ({"principals": ["deploy"]}, "principal 'deploy' is not bound to target web-1"),
        ({"principals": ["-oProxyCommand=x@web-1"]}, "bad principal"),
        ({"known_hosts": ["@cert-authority * ssh-ed25519 AAAA\n* ssh-ed25519 BBBB"]}, "known_hosts line"),
    ],
)
def test_ssh_refuses_a_certificate_answer_it_cannot_use_safely_and_never_runs_ssh(
    broker: FakeBroker, client: Client, changes: dict[str, Any], error: str
) -> None:
    broker.certificate = certificate(**changes)
    done = client.run("ssh", "web-1", "--", "true")
    assert done.returncode == 3, done.stderr
    assert error in only_error(done)
    assert not client.marker.exists()
    assert client.left_on_disk() == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_before_ssh_starts_leaves_no_key_on_disk(
    broker: FakeBroker, client: Client, signum: signal.Signals
) -> None:
    broker.hold = True  # the certificate is being minted: the key is on disk, ssh not yet started
    session = subprocess.Popen(
        client.argv("ssh", "web-1", "--", "true"),
        env=client.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert broker.arrived.wait(timeout=60), "the certificate was never asked for"
        [directory] = client.runtime.iterdir()
        assert (directory / "id_ed25519").stat().st_size > 0  # the private key, written by ssh-keygen
        session.send_signal(signum)
        _, stderr = session.communicate(timeout=30)
    finally:
        if session.poll() is None:
            session.kill()
            session.communicate()
        broker.release.set()
    assert session.returncode == 128 + signum, stderr
    assert stderr.decode().strip() == f"error: stopped by {signum.name}; the session key is removed"
    assert client.left_on_disk() == []
    assert not client.marker.exists()
