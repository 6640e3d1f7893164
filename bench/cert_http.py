"""SSH certificates issued per second through the HTTP API, next to a do-nothing FastAPI endpoint.

    .venv/bin/python bench/cert_http.py                    # wrk if installed, else the Python client
    .venv/bin/python bench/cert_http.py --workers 1,2 --rounds 3 --seconds 10
    .venv/bin/python bench/cert_http.py --client python --total 5000
    .venv/bin/python bench/cert_http.py --workers 1 --seconds 15 --profile /tmp/broker.prof

Each issuance is the whole production path: bearer token checked (from the in-process cache after
the first request), active grant looked up and checked again under the write lock, certificate
signed by the user CA, credential row and hash-chained, signed audit record committed to SQLite
before the answer, JSON answer with the known_hosts lines. Certificates asked for at the same
moment are committed together (group commit, ``api/group_commit.py``). The broker is a real
``jitgate server --workers N`` on a fresh data directory each round; the ceiling is
``bench/trivial_app.py`` (an ``async`` FastAPI endpoint) on the same uvicorn with the same number
of workers, driven by the same client in the same round, 32 concurrent keep-alive connections.
Rounds alternate ceiling and broker so that load from elsewhere on the machine hits both; the
median round is reported next to every round's figure.

Client: ``wrk`` (``apt-get install -y wrk``) with a Lua script for the POST when it is on PATH —
one C process that needs a fraction of a core — otherwise the async Python client of
``bench/common.py``, which on this machine tops out below a thousand requests per second and so
hides the ceiling. ``--profile FILE`` runs a one-worker broker under cProfile (much slower, and it
sees only the event loop's thread, not the thread that signs and commits).

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from common import JITGATE, free_port, load, percentiles, wait_healthy
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = Path(__file__).resolve().parent
CONCURRENCY = 32
POLICY = """
targets:
  - {name: web-1, kind: ssh, address: 127.0.0.1, port: 2222, labels: {env: stage}}
roles:
  - name: self-service
    targets: {names: [web-1]}
    ssh: {logins: [deploy]}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"
%(auth)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"bad_status\\": %%d, \\"socket_errors\\": %%d, "
    .. "\\"p50_us\\": %%d, \\"p99_us\\": %%d}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Result:
    label: str
    rate: float
    p50_ms: float
    p99_ms: float
    ok: int
    failed: int

    def line(self) -> str:
        return (
            f"{self.label:<52} {self.rate:>8.0f}/s   p50 {self.p50_ms:>6.1f} ms   p99 {self.p99_ms:>6.1f} ms"
            f"   ({self.ok} ok, {self.failed} failed)"
        )


def run_wrk(label: str, base: str, path: str, body: str, token: str | None, *, seconds: float) -> Result:
    with tempfile.TemporaryDirectory(prefix="jitgate-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
        script.write_text(WRK_SCRIPT % {"body": body, "auth": auth})
        script.chmod(0o600)
        done = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{CONCURRENCY}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                base + path,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK "))
    stats = json.loads(line[4:])
    failed = stats["bad_status"] + stats["socket_errors"]
    ok = stats["requests"] - stats["bad_status"]
    return Result(
        label,
        ok / (stats["duration_us"] / 1e6),
        stats["p50_us"] / 1000,
        stats["p99_us"] / 1000,
        ok,
        failed,
    )


def run_python(label: str, base: str, path: str, body: str, token: str | None, *, total: int) -> Result:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    failures = 0

    async def call(client: httpx.AsyncClient) -> None:
        nonlocal failures
        response = await client.post(path, content=body, headers=headers)
        if response.status_code >= 300:
            failures += 1

    asyncio.run(load(base, call, total=min(200, total), concurrency=CONCURRENCY))  # warm up
    failures = 0
    rate, latencies = asyncio.run(load(base, call, total=total, concurrency=CONCURRENCY))
    p50, p99 = percentiles(latencies)
    return Result(label, rate, p50 * 1000, p99 * 1000, len(latencies) - failures, failures)


@contextmanager
def ceiling_server(workers: int) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "trivial_app:app", "--port", str(port), "--no-access-log",
         "--log-level", "warning", "--workers", str(workers)],
        cwd=HERE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.post(f"{url}/noop")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


@contextmanager
def broker_server(profile: Path | None, workers: int) -> Iterator[tuple[str, str]]:
    """A real ``jitgate server`` with one auto-approved ssh role; yields (url, alice's token)."""
    with tempfile.TemporaryDirectory(prefix="jitgate-bench-") as tmp:
        data = Path(tmp) / "data"
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(POLICY)
        added = subprocess.run(
            [*JITGATE, "users", "add", "alice", "--group=engineers", "--data-dir", str(data), "--json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        token = json.loads(added.stdout)["token"]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        python = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else [sys.executable]
        server = subprocess.Popen(
            [*python, "-m", "jitgate", "server", "--data-dir", str(data), "--policy", str(policy),
             "--listen", f"127.0.0.1:{port}", "--no-access-log", "--workers", str(workers)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_healthy(url)
            yield url, token
        finally:
            # SIGINT, not SIGTERM: cProfile writes its file only when the interpreter exits normally.
            server.send_signal(2)
            server.wait(timeout=60)


def measure_broker(
    measure: Callable[[str, str, str, str, str | None], Result], workers: int, profile: Path | None
) -> Result:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    public_line = key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    body = json.dumps({"target": "web-1", "public_key": public_line})
    with broker_server(profile, workers) as (url, token):
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        granted = httpx.post(
            f"{url}/api/v1/requests", json={"role": "self-service", "duration": "4h"}, headers=headers
        )
        if granted.status_code != 201 or granted.json()["state"] != "ACTIVE":
            raise SystemExit(f"could not get a grant: {granted.text}")
        probe = httpx.post(f"{url}/api/v1/ssh/certificates", content=body, headers=headers)
        if probe.status_code != 201:
            raise SystemExit(f"could not get a certificate: {probe.text}")
        label = f"jitgate POST /api/v1/ssh/certificates, {workers} worker(s)"
        result = measure(label, url, "/api/v1/ssh/certificates", body, token)
        issued = httpx.get(
            f"{url}/api/v1/audit", params={"action": "credential.issued", "limit": 1}, headers=headers
        ).json()
        committed = issued[0]["seq"] if issued else 0
        if committed < result.ok:
            raise SystemExit(f"only {committed} audit records for {result.ok} certificates")
        return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk: seconds per measurement")
    parser.add_argument("--total", type=int, default=4000, help="python client: requests per measurement")
    parser.add_argument("--workers", default=f"1,{os.cpu_count() or 1}", help="worker counts to measure")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per worker count")
    parser.add_argument("--profile", type=Path, help="run the broker under cProfile, write stats here")
    args = parser.parse_args()
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    counts = sorted({int(x) for x in args.workers.split(",")})
    if args.profile:
        counts, args.rounds = [1], 1

    def measure(label: str, base: str, path: str, body: str, token: str | None) -> Result:
        if client == "wrk":
            run_wrk(label, base, path, body, token, seconds=min(2.0, args.seconds))  # warm up
            return run_wrk(label, base, path, body, token, seconds=args.seconds)
        return run_python(label, base, path, body, token, total=args.total)

    print(
        f"SSH certificates over HTTP: {CONCURRENCY} concurrent clients, client={client}, "
        f"{os.cpu_count()} cores, SQLite, {args.rounds} alternating rounds"
    )
    for workers in counts:
        ceilings, brokers = [], []
        for _ in range(args.rounds):
            with ceiling_server(workers) as url:
                ceilings.append(
                    measure(
                        f"ceiling: do-nothing FastAPI POST, {workers} worker(s)", url, "/noop", "{}", None
                    )
                )
            print(ceilings[-1].line())
            brokers.append(measure_broker(measure, workers, args.profile))
            print(brokers[-1].line())
        ceiling, broker = median(ceilings), median(brokers)
        print(
            f"  median of {args.rounds}: {broker.rate:.0f}/s (p50 {broker.p50_ms:.1f} ms, "
            f"p99 {broker.p99_ms:.1f} ms) = {broker.rate / ceiling.rate:.0%} of the ceiling's "
            f"{ceiling.rate:.0f}/s"
        )
    if args.profile:
        print(f"profile written to {args.profile} (python -m pstats {args.profile})")


def median(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.rate)[len(results) // 2]


if __name__ == "__main__":
    main()
