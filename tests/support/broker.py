"""A real ``jitgate server`` process on a free loopback port, for end-to-end tests of the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

JITGATE = [sys.executable, "-m", "jitgate"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    def start(cls, data: Path, policy: Path, log: Path, env: dict[str, str]) -> Server:
        port = free_port()
        handle = log.open("ab")
        process = subprocess.Popen(
            [*JITGATE, "server", "--data-dir", str(data), "--policy", str(policy),
             "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=handle, env={**os.environ, **env},
        )  # fmt: skip
        handle.close()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    return cls(process, url, log)
            except httpx.HTTPError:
                time.sleep(0.05)  # polling for the server to come up
        process.kill()
        process.wait()
        pytest.fail("jitgate server did not start: " + log.read_text()[-2000:])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
