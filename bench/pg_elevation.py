"""Elevations of existing PostgreSQL logins granted and revoked per second: through the broker vs the
bare GRANT/REVOKE statements on as many connections, and where the difference goes.

    .venv/bin/python bench/pg_elevation.py                  # 400 logins, 3 rounds
    .venv/bin/python bench/pg_elevation.py --count 1000 --rounds 5 --server postgresql://postgres@127.0.0.1:5432

Everything runs against one throwaway database with a CREATEROLE-only admin, one NOLOGIN role to
hand out and ``count`` existing logins (created and dropped here). Each round measures, in turn:

* floor: ``GRANT role TO login`` for every login, then ``REVOKE role FROM login``, one statement
  each, on as many psycopg connections as the broker has revocation workers, one thread each;
* provider: the calls the broker makes, on as many threads: ``find_account``, ``held`` and
  ``elevate`` for every login, then ``withdraw`` (check, ``REVOKE``, end the login's sessions);
* workflow: the broker's queue with a provider that does nothing at all — what the broker's own
  bookkeeping costs (SQLite store in a temporary directory, audit log, the real scheduler functions);
* broker: the real thing — ``count`` auto-approved grants submitted (not timed: the request path),
  ``run_revocations`` applies them all, the clock moves past their end, ``expire_due`` ends them
  (timed apart) and ``run_revocations`` withdraws them.

The figures of each kind are the median over the rounds, the rounds interleaved so that a busy
machine weighs on every kind alike. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jitgate.audit.chain import AuditLog
from jitgate.audit.keys import load_or_create_signing_key
from jitgate.clock import FrozenClock
from jitgate.domain.identity import Identity
from jitgate.policy.loader import parse_policy
from jitgate.policy.model import Target
from jitgate.providers.base import CredentialProvider
from jitgate.providers.postgres import PostgresProvider
from jitgate.store.db import Database
from jitgate.store.migrate import upgrade
from jitgate.workflow import requests
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from jitgate.workflow.scheduler import REVOCATION_WORKERS, expire_due, run_revocations

ENV = "JG_BENCH_ADMIN_DSN"
WINDOW = timedelta(minutes=10)
TARGET = Target(name="orders-db", kind="postgres", admin_dsn_env=ENV)
Phases = dict[str, float]


@contextmanager
def throwaway_target(server: str, count: int) -> Iterator[tuple[str, str, list[str]]]:
    """A database, a CREATEROLE-only admin, a role to hand out and ``count`` logins; yields
    (admin DSN, role, logins)."""
    suffix = secrets.token_hex(4)
    database, admin, role = f"jg_bench_{suffix}", f"jg_bench_admin_{suffix}", f"jg_bench_ops_{suffix}"
    logins = [f"jg_bench_{suffix}_u{n:05d}" for n in range(count)]
    password = secrets.token_urlsafe(16)
    params: dict[str, Any] = {**conninfo_to_dict(server), "dbname": "postgres"}
    with psycopg.connect(make_conninfo(**params), autocommit=True) as root:
        root.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        root.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                sql.Identifier(admin), sql.Literal(password)
            )
        )
        root.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        with root.transaction():
            for login in logins:
                root.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
        try:
            yield (
                make_conninfo(**{**params, "user": admin, "password": password, "dbname": database}),
                role,
                logins,
            )
        finally:
            root.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
            with root.transaction():
                for name in [*logins, role, admin]:
                    root.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def policy(role: str) -> str:
    return f"""
targets:
  - name: orders-db
    kind: postgres
    admin_dsn_env: {ENV}
roles:
  - name: orders-ops
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [{role}], existing_login: "{{user}}"}}
    max_duration: 1h
    requesters: [group:dbas]
    approval: auto
"""


def timed(step: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = step()
    return time.perf_counter() - start, result


def threaded(
    workers: int, shares: list[list[Any]], each: Callable[[Any, Any], None], state: list[Any]
) -> float:
    """Seconds for ``workers`` threads, released together, to call ``each(state[n], item)`` on
    every item of their share ``shares[n]``."""
    start = threading.Barrier(workers + 1)

    def run(n: int) -> None:
        start.wait()
        for item in shares[n]:
            each(state[n], item)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def floor(admin_dsn: str, role: str, logins: list[str], workers: int) -> Phases:
    who, shares = sql.Identifier(role), [logins[n::workers] for n in range(workers)]
    conns = [psycopg.connect(admin_dsn, autocommit=True) for _ in range(workers)]
    try:
        grant = sql.SQL("GRANT {} TO {}")
        revoke = sql.SQL("REVOKE {} FROM {}")
        return {
            "apply": threaded(
                workers, shares, lambda c, n: c.execute(grant.format(who, sql.Identifier(n))), conns
            ),
            "withdraw": threaded(
                workers, shares, lambda c, n: c.execute(revoke.format(who, sql.Identifier(n))), conns
            ),
        }
    finally:
        for conn in conns:
            conn.close()


def provider_alone(admin_dsn: str, role: str, logins: list[str], workers: int) -> Phases:
    provider = PostgresProvider({ENV: admin_dsn})
    items, shares = (role,), [logins[n::workers] for n in range(workers)]

    def apply(_: object, login: str) -> None:
        account = provider.find_account(TARGET, login)
        if account is None or provider.held(TARGET, account, items):
            raise RuntimeError(f"login {login} is missing or already elevated")
        provider.elevate(TARGET, account, items)

    try:
        return {
            "apply": threaded(workers, shares, apply, [None] * workers),
            "withdraw": threaded(
                workers, shares, lambda _, n: provider.withdraw(TARGET, n, items), [None] * workers
            ),
        }
    finally:
        provider.close()


class DoesNothing:
    """An elevation provider that answers at once, to weigh the broker's own work."""

    kind = "postgres"
    revocable = True

    def find_account(self, target: Target, account: str) -> str:
        return account

    def held(self, target: Target, account: str, items: tuple[str, ...]) -> frozenset[str]:
        return frozenset()

    def elevate(self, target: Target, account: str, items: tuple[str, ...]) -> Mapping[str, Any]:
        return {}

    def withdraw(self, target: Target, account: str, items: tuple[str, ...]) -> Mapping[str, Any]:
        return {}

    def new_handle(self, request: object) -> str:
        raise NotImplementedError

    def issue(self, request: object, handle: str) -> object:
        raise NotImplementedError

    def revoke(self, target: Target, handle: str) -> None:
        raise NotImplementedError

    def check(self, target: Target) -> object:
        raise NotImplementedError


def through_broker(provider: object, role: str, logins: list[str]) -> Phases:
    count = len(logins)
    with tempfile.TemporaryDirectory(prefix="jitgate-bench-") as tmp:
        db = Database(f"sqlite:///{tmp}/broker.db")
        upgrade(db.engine)
        clock = FrozenClock(datetime.now(UTC))
        providers: dict[str, CredentialProvider] = {"postgres": provider}  # type: ignore[dict-item]
        ctx = WorkflowContext(
            db=db,
            policies=PolicyHolder(parse_policy(policy(role))),
            audit=AuditLog(load_or_create_signing_key(Path(tmp) / "audit.pem")),
            clock=clock,
            providers=providers,
        )
        try:
            submit, _ = timed(lambda: [submitted(ctx, login) for login in logins])
            apply, applied = timed(lambda: drained(ctx))
            clock.advance(WINDOW)
            expire, _ = timed(lambda: sum(iter(lambda: expire_due(ctx), 0)))
            withdraw, withdrawn = timed(lambda: drained(ctx))
        finally:
            db.dispose()
    if applied != count or withdrawn != count:
        raise RuntimeError(f"applied {applied}, withdrew {withdrawn} of {count}")
    return {"submit": submit, "apply": apply, "expire": expire, "withdraw": withdraw}


def submitted(ctx: WorkflowContext, login: str) -> None:
    identity = Identity(name=login, groups=frozenset({"dbas"}))
    view = requests.submit(ctx, identity, role="orders-ops", reason="bench", duration=WINDOW)
    if view["state"] != "ACTIVE":
        raise RuntimeError(f"grant for {login} is {view['state']}")


def drained(ctx: WorkflowContext) -> int:
    """Run the queue until nothing is due; returns how many items succeeded."""
    done = 0
    while True:
        succeeded, failed = run_revocations(ctx)
        if failed:
            raise RuntimeError(f"{failed} queue item(s) failed")
        if not succeeded:
            return done
        done += succeeded


def real_broker(admin_dsn: str, role: str, logins: list[str]) -> Phases:
    provider = PostgresProvider({ENV: admin_dsn})
    try:
        return through_broker(provider, role, logins)
    finally:
        provider.close()


def run(server: str, count: int, rounds: int) -> None:
    workers = REVOCATION_WORKERS
    seen: dict[str, list[Phases]] = {"floor": [], "provider": [], "workflow": [], "broker": []}
    with throwaway_target(server, count) as (admin_dsn, role, logins):
        for _ in range(rounds):
            seen["floor"].append(floor(admin_dsn, role, logins, workers))
            seen["provider"].append(provider_alone(admin_dsn, role, logins, workers))
            seen["workflow"].append(through_broker(DoesNothing(), role, logins))
            seen["broker"].append(real_broker(admin_dsn, role, logins))
    median = {
        kind: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for kind, runs in seen.items()
    }

    def rate(kind: str, phase: str) -> float:
        return count / median[kind][phase]

    def pairs(kind: str) -> float:
        return count / (median[kind]["apply"] + median[kind]["withdraw"])

    print(
        f"PostgreSQL elevations of {count} existing logins; {workers} workers / connections; CREATEROLE-only"
        f" admin; broker store SQLite; median of {rounds} round(s)"
    )
    print(f"  {'':44} {'grant':>9} {'revoke':>9} {'both':>9} {'of floor':>9}")
    labels = {
        "floor": "floor: bare GRANT / REVOKE",
        "provider": "provider alone (the broker's calls)",
        "workflow": "workflow alone (a provider doing nothing)",
        "broker": "broker: run_revocations, real provider",
    }
    for kind, label in labels.items():
        share = pairs(kind) / pairs("floor")
        print(
            f"  {label:44} {rate(kind, 'apply'):7.0f}/s {rate(kind, 'withdraw'):7.0f}/s"
            f" {pairs(kind):7.0f}/s {share:9.0%}"
        )
    print(
        f"  broker, for scale: submit {rate('broker', 'submit'):.0f}/s (the request path),"
        f" expire_due {rate('broker', 'expire'):.0f}/s"
    )
    print(f"  goal: the broker at 80% of the floor; it reaches {pairs('broker') / pairs('floor'):.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    run(args.server, args.count, args.rounds)


if __name__ == "__main__":
    main()
