"""Revocation that cannot be lost, through the whole stack: a real ``jitgate server`` process, the
HTTP API, the real database behind a TCP proxy the test switches off, and a broker killed with
SIGKILL while the revocation is still pending.

The broker reaches the database's admin port only through the proxy (its ``admin_dsn_env`` points
there), while the credential it hands out names the database itself (``address``/``port`` of the
target), so the user's session lives on while the broker cannot reach the server. The PostgreSQL
admin has only CREATEROLE, as on a managed database.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pymysql
import pytest
from dbkit import MARIADB_HOST, MARIADB_PORT, PG_HOST, PG_PORT, MariadbEnv, PgEnv, TcpProxy, mariadb_root

JITGATE = [sys.executable, "-m", "jitgate"]
PG_DSN_ENV = "JG_E2E_PG_ADMIN_DSN"
MARIADB_DSN_ENV = "JG_E2E_MARIADB_ADMIN_DSN"
# Small enough that a retry comes within a second; the real defaults are 2 s and 300 s.
BACKOFF = {"JITGATE_REVOCATION_BACKOFF_SECONDS": "0.2", "JITGATE_REVOCATION_BACKOFF_MAX_SECONDS": "1"}
GRANT_FOR = "4s"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def offline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JITGATE, *args], capture_output=True, text=True, timeout=60, check=False)


def poll(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Return the first truthy ``check()``, asking every 50 ms; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Broker:
    """A data directory with users, and the ``jitgate server`` processes started on it."""

    root: Path
    policy: str
    environ: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    url: str = ""

    @property
    def data(self) -> Path:
        return self.root / "data"

    def add_users(self) -> None:
        for name, flags in {"alice": ["--group=analysts"], "auditor": ["--admin"]}.items():
            done = offline("users", "add", name, *flags, "--data-dir", str(self.data), "--json")
            assert done.returncode == 0, done.stderr
            self.tokens[name] = json.loads(done.stdout)["token"]

    def start(self) -> None:
        """Start a new server process on the data directory and wait until it answers."""
        policy = self.root / "policy.yaml"
        policy.write_text(self.policy)
        port = free_port()
        log = self.root / f"server-{len(self.processes) + 1}.log"
        command = [*JITGATE, "server", "--data-dir", str(self.data), "--policy", str(policy)]
        with log.open("w") as sink:
            process = subprocess.Popen(
                [*command, "--listen", f"127.0.0.1:{port}"],
                env={**os.environ, **self.environ},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        self.logs.append(log)
        self.url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}: {log.read_text()}")
            try:
                return httpx.get(f"{self.url}/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        poll("the server to answer", healthy, timeout=30)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing is flushed or finished on the way out."""
        process = self.processes[-1]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def client(self, user: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[user]}"}, timeout=30
        )

    def call(self, user: str, method: str, path: str, **kw: Any) -> Any:
        with self.client(user) as http:
            response = http.request(method, path, **kw)
        assert response.is_success, (method, path, response.status_code, response.text)
        return response.json()

    def audit(self, action: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.call("auditor", "GET", "/api/v1/audit", params={"action": action})
        return found

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics").text
        values = [float(line.split()[1]) for line in text.splitlines() if line.startswith(f"{name} ")]
        assert values, f"{name} is not exported"
        return values[0]


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[[str, dict[str, str]], Broker]]:
    made: list[Broker] = []

    def make(policy: str, environ: dict[str, str]) -> Broker:
        broker = Broker(root=tmp_path, policy=policy, environ={**BACKOFF, **environ})
        broker.add_users()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.stop_all()


def request_login(broker: Broker, role: str, target: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Alice asks for ``role`` for a few seconds (auto-approved) and gets a login on ``target``."""
    req = broker.call("alice", "POST", "/api/v1/requests", json={"role": role, "duration": GRANT_FOR})
    assert req["state"] == "ACTIVE", req
    with broker.client("alice") as http:
        response = http.post("/api/v1/db/credentials", json={"target": target})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    login: dict[str, Any] = response.json()
    assert login["grant_id"] == req["grant"]["id"]
    return req["grant"], login


def expired_with_failing_revocation(broker: Broker, grant_id: str) -> dict[str, Any]:
    """Wait until the grant has expired and its revocation failed because the target is unreachable."""

    def failing() -> dict[str, Any] | None:
        grant: dict[str, Any] = broker.call("alice", "GET", f"/api/v1/grants/{grant_id}")
        pending = grant["pending_revocations"]
        if grant["state"] == "EXPIRED" and pending and "cannot connect" in (pending[0]["last_error"] or ""):
            return grant
        return None

    grant: dict[str, Any] = poll("a failed revocation on the expired grant", failing)
    assert datetime.now(UTC) >= datetime.fromisoformat(grant["expires_at"].replace("Z", "+00:00"))
    assert len(grant["pending_revocations"]) == 1
    listed = broker.call("alice", "GET", "/api/v1/grants")
    [pending] = next(g for g in listed if g["id"] == grant_id)["pending_revocations"]
    assert pending["attempts"] >= 1
    assert "cannot connect" in pending["last_error"]
    assert broker.metric("jitgate_failing_revocations") >= 1
    assert broker.metric("jitgate_pending_revocations") >= 1
    failures = broker.audit("revocation.failed")
    assert failures
    assert all(event["grant_id"] == grant_id for event in failures)
    assert "cannot connect" in failures[0]["details"]["error"]
    return grant


def revoked_for_good(broker: Broker, grant_id: str, handle: str) -> None:
    """The revocation finished: nothing pending, audited, and the audit chain intact."""
    grant = broker.call("alice", "GET", f"/api/v1/grants/{grant_id}")
    assert grant["state"] == "EXPIRED"
    assert grant["pending_revocations"] == []
    assert broker.metric("jitgate_pending_revocations") == 0
    revoked = broker.audit("credential.revoked")
    assert [(e["grant_id"], e["details"]["handle"]) for e in revoked] == [(grant_id, handle)]


def no_secret_anywhere(broker: Broker, *secrets: str) -> None:
    broker.stop_all()
    verify = offline("audit", "verify", "--data-dir", str(broker.data))
    assert verify.returncode == 0, verify.stderr
    assert "intact" in verify.stdout
    export = offline("audit", "export", "--data-dir", str(broker.data))
    assert export.returncode == 0, export.stderr
    actions = [json.loads(line)["action"] for line in export.stdout.splitlines()]
    assert "credential.issued" in actions
    texts = {"audit export": export.stdout + export.stderr}
    texts |= {log.name: log.read_text() for log in broker.logs}
    assert any("revocation on" in text for text in texts.values()), "the failures should be logged"
    for where, text in texts.items():
        for secret in (*secrets, *broker.tokens.values()):
            assert secret not in text, f"a secret reached the {where}"


def pg_login_exists(env: PgEnv, login: str) -> bool:
    with env.superuser() as db:
        return db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [login]).fetchone() is not None


def pending_lease_seconds(broker: Broker) -> float:
    """Seconds until the pending revocation may be tried again, read from the broker's database."""
    with sqlite3.connect(broker.data / "jitgate.db") as db:
        row = db.execute("SELECT next_attempt_at FROM revocations WHERE state = 'pending'").fetchone()
    assert row is not None, "the revocation should still be pending"
    when = datetime.fromisoformat(str(row[0]))
    return (when.replace(tzinfo=when.tzinfo or UTC) - datetime.now(UTC)).total_seconds()


@pytest.mark.postgres
def test_postgres_revocation_survives_an_unreachable_database_and_a_killed_broker(
    pg_env: PgEnv, make_broker: Callable[[str, dict[str, str]], Broker], tcp_proxy: Callable[..., TcpProxy]
) -> None:
    proxy = tcp_proxy((PG_HOST, PG_PORT))
    policy = f"""
targets:
  - name: orders-db
    kind: postgres
    address: {PG_HOST}
    port: {PG_PORT}
    admin_dsn_env: {PG_DSN_ENV}
roles:
  - name: orders-read
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [{pg_env.readonly}]}}
    min_duration: 1s
    max_duration: 30m
    requesters: [group:analysts]
    approval: auto
"""
    broker = make_broker(policy, {PG_DSN_ENV: pg_env.admin_dsn(port=proxy.port)})
    broker.start()

    grant, login = request_login(broker, "orders-read", "orders-db")
    handle, password = login["user"], login["password"]
    assert (login["host"], login["port"], login["database"]) == (PG_HOST, PG_PORT, pg_env.database)
    session = psycopg.connect(login["dsn"], autocommit=True)
    try:
        assert session.execute("SELECT count(*) FROM app.orders").fetchone() == (2,)

        proxy.stop()
        expired_with_failing_revocation(broker, grant["id"])
        assert pg_login_exists(pg_env, handle)
        assert session.execute("SELECT current_user").fetchone() == (handle,)  # still alive, as expected

        # Kill right after a failed attempt, so the broker dies between attempts rather than inside
        # one (an attempt in progress is leased to its broker for two minutes).
        seen = len(broker.audit("revocation.failed"))
        poll("another failed attempt", lambda: len(broker.audit("revocation.failed")) > seen)
        broker.kill()
        assert pending_lease_seconds(broker) < 2, "killed inside an attempt; rerun"

        broker.start()
        failed_before = len(broker.audit("revocation.failed"))
        poll(
            "the new broker to retry (and fail) on its own",
            lambda: len(broker.audit("revocation.failed")) > failed_before,
        )
        assert pg_login_exists(pg_env, handle)

        proxy.start()
        poll("the login to be dropped", lambda: not pg_login_exists(pg_env, handle), timeout=10)
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
    finally:
        session.close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(login["dsn"]).close()
    poll("the revocation to be recorded", lambda: not broker.metric("jitgate_pending_revocations"))
    revoked_for_good(broker, grant["id"], handle)
    # What became of the login's objects is part of the record (nothing is ever handed to the admin).
    (revoked,) = broker.audit("credential.revoked")
    assert revoked["details"]["outcome"] == {"objects": "dropped", "databases": [pg_env.database]}
    no_secret_anywhere(broker, password, pg_env.admin_password)


@pytest.mark.mariadb
def test_mariadb_revocation_waits_out_an_unreachable_server(
    mariadb_env: MariadbEnv,
    make_broker: Callable[[str, dict[str, str]], Broker],
    tcp_proxy: Callable[..., TcpProxy],
) -> None:
    proxy = tcp_proxy((MARIADB_HOST, MARIADB_PORT))
    admin_dsn = mariadb_env.admin_dsn().replace(f":{MARIADB_PORT}/", f":{proxy.port}/")
    policy = f"""
targets:
  - name: shop-db
    kind: mariadb
    address: {MARIADB_HOST}
    port: {MARIADB_PORT}
    admin_dsn_env: {MARIADB_DSN_ENV}
roles:
  - name: shop-read
    targets: {{names: [shop-db]}}
    mariadb: {{roles: [{mariadb_env.readonly}]}}
    min_duration: 1s
    max_duration: 30m
    requesters: [group:analysts]
    approval: auto
"""
    broker = make_broker(policy, {MARIADB_DSN_ENV: admin_dsn})
    broker.start()

    grant, login = request_login(broker, "shop-read", "shop-db")
    handle, password = login["user"], login["password"]
    session = pymysql.connect(
        host=MARIADB_HOST,
        port=MARIADB_PORT,
        user=handle,
        password=password,
        database=mariadb_env.database,
        autocommit=True,
    )

    def user_exists() -> bool:
        with mariadb_root() as root, root.cursor() as cur:
            cur.execute("SELECT 1 FROM mysql.user WHERE User = %s", (handle,))
            return cur.fetchone() is not None

    try:
        with session.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM orders")
            assert cur.fetchone() == (2,)

        proxy.stop()
        expired_with_failing_revocation(broker, grant["id"])
        # MariaDB has no VALID UNTIL: past the grant's end, only the broker's revocation helps.
        assert user_exists()
        with session.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM orders")
            assert cur.fetchone() == (2,)

        proxy.start()
        poll("the user to be dropped", lambda: not user_exists(), timeout=10)
        with pytest.raises(pymysql.MySQLError), session.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        session.close()
    poll("the revocation to be recorded", lambda: not broker.metric("jitgate_pending_revocations"))
    revoked_for_good(broker, grant["id"], handle)
    no_secret_anywhere(broker, password, mariadb_env.admin_password)
