"""Workflow throughput through the HTTP API: create request -> auto-approve -> grant, one POST each.

Measured on SQLite and on PostgreSQL, next to a do-nothing FastAPI endpoint on the same uvicorn
(the ceiling), with the same client in the same run. Run: .venv/bin/python bench/workflow_http.py
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from common import broker, free_port, load, row

TOTAL = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
CONCURRENCY = 32
POLICY = """
targets:
  - {name: web-1, kind: ssh, address: 127.0.0.1, labels: {env: stage}}
roles:
  - name: self-service
    targets: {names: [web-1]}
    ssh: {logins: [deploy]}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
"""
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def measure_broker(label: str, database_url: str | None) -> str:
    with broker(POLICY, database_url=database_url, users={"alice": ["engineers"]}) as (url, tokens):
        headers = {"Authorization": f"Bearer {tokens['alice']}"}

        async def call(client: httpx.AsyncClient) -> None:
            response = await client.post(
                "/api/v1/requests", json={"role": "self-service", "duration": "10m"}, headers=headers
            )
            if response.status_code != 201 or response.json()["state"] != "ACTIVE":
                raise RuntimeError(response.text)

        asyncio.run(load(url, call, total=200, concurrency=CONCURRENCY))  # warm up
        rate, latencies = asyncio.run(load(url, call, total=TOTAL, concurrency=CONCURRENCY))
        return row(label, rate, latencies)


def measure_ceiling() -> str:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "trivial_app:app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=Path(__file__).parent,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.post(f"{url}/noop")
                break
            except httpx.HTTPError:
                time.sleep(0.1)

        async def call(client: httpx.AsyncClient) -> None:
            await client.post("/noop")

        asyncio.run(load(url, call, total=200, concurrency=CONCURRENCY))
        rate, latencies = asyncio.run(load(url, call, total=TOTAL, concurrency=CONCURRENCY))
        return row("ceiling: do-nothing FastAPI POST", rate, latencies)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    print(f"workflow over HTTP: {TOTAL} requests, {CONCURRENCY} concurrent clients, 1 uvicorn worker")
    print(measure_ceiling())
    print(measure_broker("jitgate request->auto-approve->grant, SQLite", None))
    name = f"jg_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = PG.rsplit("/", 1)[0] + f"/{name}"
        print(measure_broker("jitgate request->auto-approve->grant, PostgreSQL", url))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
