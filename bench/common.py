"""Shared pieces of the benchmarks: start a real broker process, drive it with concurrent clients,
and print percentiles. Benchmarks print figures; they assert nothing."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

JITGATE = [sys.executable, "-m", "jitgate"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def broker(
    policy: str, *, database_url: str | None = None, users: dict[str, list[str]]
) -> Iterator[tuple[str, dict[str, str]]]:
    """A real ``jitgate server`` process with the given policy and users; yields (url, tokens)."""
    with tempfile.TemporaryDirectory(prefix="jitgate-bench-") as tmp:
        data = Path(tmp) / "data"
        policy_path = Path(tmp) / "policy.yaml"
        policy_path.write_text(policy)
        db_flags = ["--database-url", database_url] if database_url else []
        tokens = {}
        for name, groups in users.items():
            done = subprocess.run(
                [
                    *JITGATE,
                    "users",
                    "add",
                    name,
                    *[f"--group={g}" for g in groups],
                    "--data-dir",
                    str(data),
                    *db_flags,
                    "--json",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            tokens[name] = json.loads(done.stdout)["token"]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                *JITGATE,
                "server",
                "--data-dir",
                str(data),
                "--policy",
                str(policy_path),
                "--listen",
                f"127.0.0.1:{port}",
                "--no-access-log",
                *db_flags,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ},
        )
        try:
            wait_healthy(url)
            yield url, tokens
        finally:
            server.terminate()
            server.wait(timeout=20)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50, p99


async def load(
    url: str, call: Callable[[httpx.AsyncClient], Awaitable[None]], *, total: int, concurrency: int
) -> tuple[float, list[float]]:
    """Run ``call`` ``total`` times over ``concurrency`` keep-alive clients; returns (rate, latencies)."""
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                await call(client)
                latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies


def row(name: str, rate: float, latencies: list[float]) -> str:
    p50, p99 = percentiles(latencies)
    return f"{name:<48} {rate:>9.0f}/s   p50 {p50 * 1000:>7.1f} ms   p99 {p99 * 1000:>7.1f} ms"
