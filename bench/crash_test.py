"""Crash test: a real broker under mixed load, killed with SIGKILL at random moments, restarted.

Each trial drives the running ``jitgate server`` with client threads (requests, approvals,
revocations, extensions, PostgreSQL logins, SSH certificates) on grants of a few seconds, kills
the server with SIGKILL at a random moment, starts it again on the same data, lets the load go
on briefly, stops it, and then waits (bounded, polling) for the broker to settle. It then checks:

- every grant whose end has passed is EXPIRED or REVOKED, with no revocation left pending;
- at the real PostgreSQL, no ``jit_`` login of an ended grant exists, and no ``jit_`` login exists
  that the broker has no record of;
- no credential has two ``credential.revoked`` audit records;
- ``jitgate audit verify`` exits 0.

A trial prints one line: what it found. The summary prints trials, kills, grants, logins,
certificates, violations and time. Exit status 1 when any trial found a violation.

    python bench/crash_test.py --trials 100 [--seed N] [--database-url postgresql+psycopg://...]

Needs PostgreSQL on 127.0.0.1:5432 with trust authentication for ``postgres`` (it creates and
afterwards drops its own database, admin role and group role).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import JITGATE, free_port, wait_healthy

from jitgate.store.tables import audit_events, credentials, grants, revocations

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
DSN_ENV = "JG_CRASH_PG_ADMIN_DSN"
# A revocation claimed by the killed broker is retried once its claim runs out (the scheduler's
# REVOCATION_LEASE, 30 s): settling may take that long, and the trial says when it did.
SETTLE_SECONDS = 45.0
LEASED = 2.0
"""Seconds ahead beyond which a pending revocation's next attempt is a claim, not a backoff."""
ENV = {
    "JITGATE_REVOCATION_BACKOFF_SECONDS": "0.2",
    "JITGATE_REVOCATION_BACKOFF_MAX_SECONDS": "1",
    "JITGATE_MAX_PENDING_REQUESTS_PER_REQUESTER": "1000",
}


def policy(group: str) -> str:
    return f"""
targets:
  - {{name: orders-db, kind: postgres, address: 127.0.0.1, port: 5432, admin_dsn_env: {DSN_ENV}}}
  - {{name: stage-1, kind: ssh, address: 127.0.0.1, labels: {{env: stage}}}}
roles:
  - name: db-read
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [{group}]}}
    min_duration: 1s
    max_duration: 10s
    requesters: [group:analysts]
    approval: auto
  - name: db-reviewed
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [{group}]}}
    min_duration: 1s
    max_duration: 10s
    requesters: [group:analysts]
    approvers: [group:leads]
  - name: shell
    targets: {{labels: {{env: stage}}}}
    ssh: {{logins: [deploy]}}
    min_duration: 1s
    max_duration: 10s
    requesters: [group:analysts]
    approval: auto
"""


@dataclass
class PgTarget:
    """A private database, a CREATEROLE admin and a group role at the real PostgreSQL."""

    suffix: str = field(default_factory=lambda: secrets.token_hex(4))
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    @property
    def database(self) -> str:
        return f"jg_crash_{self.suffix}"

    @property
    def admin(self) -> str:
        return f"jg_crash_admin_{self.suffix}"

    @property
    def group(self) -> str:
        return f"jg_crash_ro_{self.suffix}"

    def dsn(self) -> str:
        return f"postgresql://{self.admin}:{self.password}@127.0.0.1:5432/{self.database}"

    def root(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(**PG, dbname="postgres", autocommit=True)  # type: ignore[arg-type]

    def create(self) -> None:
        with self.root() as db:
            admin, group = sql.Identifier(self.admin), sql.Identifier(self.group)
            db.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(admin, self.password))
            db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(group))
            db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def logins(self) -> set[str]:
        """``jit_`` logins that are members of this run's group role."""
        with self.root() as db:
            rows = db.execute(
                "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid"
                " JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = %s AND m.rolname LIKE 'jit\\_%%'",
                [self.group],
            ).fetchall()
        return {name for (name,) in rows}

    def exists(self, names: set[str]) -> set[str]:
        with self.root() as db:
            rows = db.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [list(names)])
            return {name for (name,) in rows.fetchall()}

    def drop(self) -> None:
        with self.root() as db:
            db.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database))
            )
            for name in self.logins():
                db.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
            for name in (self.group, self.admin):
                db.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@dataclass
class Broker:
    root: Path
    database_url: str | None
    environ: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    starts: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def db_flags(self) -> list[str]:
        return ["--database-url", self.database_url] if self.database_url else []

    def add_user(self, name: str, *flags: str) -> None:
        done = subprocess.run(
            [
                *JITGATE,
                "users",
                "add",
                name,
                *flags,
                "--data-dir",
                str(self.data),
                *self.db_flags(),
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        self.tokens[name] = json.loads(done.stdout)["token"]

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.starts += 1
        command = [
            *JITGATE,
            "server",
            "--data-dir",
            str(self.data),
            "--policy",
            str(self.root / "policy.yaml"),
        ]
        with (self.root / "server.log").open("a") as sink:
            self.process = subprocess.Popen(
                [*command, *self.db_flags(), "--listen", f"127.0.0.1:{port}", "--no-access-log"],
                env={**os.environ, **self.environ},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        wait_healthy(self.url)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.database_url or f"sqlite:///{self.data / 'jitgate.db'}")


class Load:
    """Client threads doing what users do, against whichever server ``broker.url`` names now."""

    def __init__(self, broker: Broker, rng: random.Random, threads: int) -> None:
        self.broker = broker
        self.rng = rng
        self.threads = threads
        self.stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        key = Ed25519PrivateKey.generate().public_key()
        self.public_key = key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()

    def call(self, user: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.broker.tokens[user]}"}
        try:
            answer = httpx.request(method, self.broker.url + path, json=body, headers=headers, timeout=10)
        except httpx.HTTPError:
            self.count("connection_failed")
            return None
        self.count(f"{method} {path.split('/')[3]} {answer.status_code}")
        if answer.status_code >= 500 and answer.status_code != 503:
            self.count("server_error")
        return answer.json() if answer.is_success else None

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def step(self, rng: random.Random) -> None:
        action = rng.choice(["db", "db", "reviewed", "ssh", "revoke", "extend"])
        duration = f"{rng.randint(1, 3)}s"
        if action == "db":
            if self.call("alice", "POST", "/api/v1/requests", {"role": "db-read", "duration": duration}):
                self.call("alice", "POST", "/api/v1/db/credentials", {"target": "orders-db"})
        elif action == "reviewed":
            asked = self.call(
                "alice", "POST", "/api/v1/requests", {"role": "db-reviewed", "duration": duration}
            )
            if asked and self.call(
                "bob", "POST", f"/api/v1/requests/{asked['id']}/reviews", {"verdict": "approve"}
            ):
                self.call("alice", "POST", "/api/v1/db/credentials", {"target": "orders-db"})
        elif action == "ssh":
            if self.call("alice", "POST", "/api/v1/requests", {"role": "shell", "duration": duration}):
                body = {"target": "stage-1", "public_key": self.public_key}
                self.call("alice", "POST", "/api/v1/ssh/certificates", body)
        else:
            active = self.call("alice", "GET", "/api/v1/grants?state=ACTIVE") or []
            if active:
                grant = rng.choice(active)["id"]
                if action == "revoke":
                    self.call("alice", "POST", f"/api/v1/grants/{grant}/revoke", {"comment": "done"})
                else:
                    self.call("alice", "POST", f"/api/v1/grants/{grant}/extend", {"duration": "2s"})

    def run(self) -> list[threading.Thread]:
        def loop(seed: int) -> None:
            rng = random.Random(seed)
            while not self.stop.is_set():
                self.step(rng)

        self.stop.clear()
        started = [
            threading.Thread(target=loop, args=(self.rng.getrandbits(32),), daemon=True)
            for _ in range(self.threads)
        ]
        for thread in started:
            thread.start()
        return started


def violations(broker: Broker, pg: PgTarget, now: datetime) -> list[str]:
    """What is wrong now with grants that ended before ``now`` (empty when all is well)."""
    found: list[str] = []
    with broker.engine().connect() as conn:
        overdue = conn.execute(
            sa.select(grants.c.id, grants.c.state).where(
                grants.c.expires_at <= now, grants.c.state == "ACTIVE"
            )
        ).all()
        found += [f"grant {g} is still ACTIVE past its end" for g, _ in overdue]
        ended = {
            g
            for (g,) in conn.execute(sa.select(grants.c.id).where(grants.c.state.in_(["EXPIRED", "REVOKED"])))
        }
        pending = conn.execute(
            sa.select(revocations.c.grant_id, revocations.c.handle, revocations.c.state)
        ).all()
        found += [f"revocation of {h} ({g}) is {s}" for g, h, s in pending if s != "done" and g in ended]
        logins = conn.execute(
            sa.select(credentials.c.grant_id, credentials.c.handle, credentials.c.revoked_at).where(
                credentials.c.kind == "postgres"
            )
        ).all()
        bodies = conn.execute(
            sa.select(audit_events.c.body).where(audit_events.c.action == "credential.revoked")
        )
        revoked = Counter(json.loads(body)["details"]["handle"] for (body,) in bodies)
    of_ended = {h for g, h, _ in logins if g in ended}
    found += [
        f"login {h} of an ended grant is not marked revoked" for g, h, at in logins if g in ended and not at
    ]
    found += [f"login {h} of an ended grant still exists" for h in sorted(pg.exists(of_ended))]
    known = {h for _, h, _ in logins}
    found += [f"login {h} exists with no record at the broker" for h in sorted(pg.logins() - known)]
    found += [f"{h} revoked {n} times" for h, n in sorted(revoked.items()) if n > 1]
    return found


def leased(broker: Broker) -> int:
    """Pending revocations claimed by a broker (the one just killed) rather than waiting a backoff."""
    ahead = datetime.now(UTC) + timedelta(seconds=LEASED)
    with broker.engine().connect() as conn:
        claimed = sa.select(sa.func.count()).where(
            revocations.c.state == "pending", revocations.c.next_attempt_at > ahead
        )
        return int(conn.execute(claimed).scalar_one())


def still_active(broker: Broker) -> int:
    with broker.engine().connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(grants.c.state == "ACTIVE")).scalar_one())


def settle(broker: Broker, pg: PgTarget, known: set[str]) -> tuple[list[str], float]:
    """Poll until every grant has ended and no violation is left, or SETTLE_SECONDS pass: what
    was left and how long it took. Grants last seconds, so waiting for all checks all of them.
    Violations in ``known`` were reported by an earlier trial and are not waited for again."""
    began = time.monotonic()
    while True:
        left = [v for v in violations(broker, pg, datetime.now(UTC)) if v not in known]
        if (not left and not still_active(broker)) or time.monotonic() - began > SETTLE_SECONDS:
            return left, time.monotonic() - began
        time.sleep(0.2)


def audit_verify(broker: Broker) -> str | None:
    done = subprocess.run(
        [*JITGATE, "audit", "verify", "--data-dir", str(broker.data), *broker.db_flags()],
        capture_output=True,
        text=True,
        check=False,
    )
    return (
        None if done.returncode == 0 else f"audit verify exited {done.returncode}: {done.stdout}{done.stderr}"
    )


def trial(
    number: int, broker: Broker, pg: PgTarget, load: Load, rng: random.Random, *, known: set[str]
) -> list[str]:
    """One kill and restart; the violations it found that no earlier trial had found."""
    threads = load.run()
    kill_after = rng.uniform(0.2, 2.0)
    time.sleep(kill_after)  # the random moment of the kill, the point of the trial
    broker.kill()
    held = leased(broker)
    broker.start()
    time.sleep(rng.uniform(0.0, 1.0))  # load on the fresh broker too, for a random while
    load.stop.set()
    for thread in threads:
        thread.join(timeout=30)
    left, took = settle(broker, pg, known)
    broken = audit_verify(broker)
    found = [*left, *([broken] if broken and broken not in known else [])]
    known.update(found)
    verdict = "all fine" if not found else "; ".join(found[:5])
    claims = f", {held} revocations left claimed" if held else ""
    print(
        f"trial {number:3d}: killed after {kill_after:.2f}s{claims}, settled in {took:.1f}s: {verdict}",
        flush=True,
    )
    return found


def totals(broker: Broker) -> dict[str, int]:
    with broker.engine().connect() as conn:
        count = {
            "grants": conn.execute(sa.select(sa.func.count()).select_from(grants)).scalar_one(),
            "logins": conn.execute(
                sa.select(sa.func.count()).where(credentials.c.kind == "postgres")
            ).scalar_one(),
            "certificates": conn.execute(
                sa.select(sa.func.count()).where(credentials.c.kind == "ssh")
            ).scalar_one(),
        }
    return {k: int(v) for k, v in count.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--database-url", default=None, help="the broker's database (default SQLite)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the clean-up below runs
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    rng = random.Random(seed)
    print(f"crash test: {args.trials} trials, {args.threads} client threads, seed {seed}", flush=True)
    pg = PgTarget()
    pg.create()
    began = time.monotonic()
    failed: list[tuple[int, list[str]]] = []
    with tempfile.TemporaryDirectory(prefix="jitgate-crash-") as tmp:
        broker = Broker(Path(tmp), args.database_url, {**ENV, DSN_ENV: pg.dsn()})
        (broker.root / "policy.yaml").write_text(policy(pg.group))
        try:
            broker.add_user("alice", "--group=analysts")
            broker.add_user("bob", "--group=leads")
            broker.start()
            load = Load(broker, rng, args.threads)
            known: set[str] = set()
            for number in range(1, args.trials + 1):
                found = trial(number, broker, pg, load, rng, known=known)
                if found:
                    failed.append((number, found))
            figures = totals(broker)
        finally:
            broker.stop()
            pg.drop()
        server_errors = load.counts["server_error"]
        print(
            f"summary: {args.trials} trials, {broker.starts - 1} kills, {figures['grants']} grants,"
            f" {figures['logins']} PostgreSQL logins, {figures['certificates']} SSH certificates,"
            f" {sum(v for k, v in load.counts.items() if k.startswith(('GET', 'POST')))} requests"
            f" ({server_errors} answered 5xx other than 503), {len(failed)} trials with violations,"
            f" {time.monotonic() - began:.0f}s, seed {seed}",
            flush=True,
        )
        for number, found in failed:
            print(f"  trial {number}: {found}")
        if server_errors:
            print("  answers:", dict(sorted(load.counts.items())))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
