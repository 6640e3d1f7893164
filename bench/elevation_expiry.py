"""Time from a grant's ``expires_at`` to its elevation being gone at PostgreSQL, p50/p99, with 1,000
grants that all expire within the same minute, each elevating an existing login with a group role.

    .venv/bin/python bench/elevation_expiry.py                   # 1,000 elevations ending over 60 s
    .venv/bin/python bench/elevation_expiry.py --spread 0        # ... all at the same instant
    .venv/bin/python bench/elevation_expiry.py --count 200 --postgres   # the broker's store on PostgreSQL

Everything is real but the broker runs in-process: 1,000 existing logins (made here, in a
throwaway database, with a NOLOGIN group role, dropped at the end), ``requests.submit`` of an
auto-approved role with ``existing_login: "{user}"`` for each, and the real ``Scheduler`` threads
apply the elevations (``GRANT group TO login``), expire the grants and withdraw them (``REVOKE``,
end the login's sessions) through the real ``PostgresProvider``.

As in ``db_expiry.py``, the broker's clock runs ahead of the wall clock by an offset while the
grants are made, then jumps so that the minute in which they end starts three seconds from now.

"Gone" is the withdrawal's ``done_at`` (written right after ``REVOKE`` returned) minus the grant's
``expires_at``. A sample of logins is watched in ``pg_auth_members`` meanwhile, to check that
``done_at`` tells when the membership really disappeared; at the end no membership may be left.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from common import percentiles
from db_expiry import LEAD, ShiftedClock, Watcher, broker_store, ms
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jitgate.audit.chain import AuditLog
from jitgate.audit.keys import load_or_create_signing_key
from jitgate.domain.identity import Identity
from jitgate.policy.loader import parse_policy
from jitgate.providers.postgres import PostgresProvider
from jitgate.store.db import Database
from jitgate.store.tables import credentials, grants, revocations
from jitgate.workflow import requests
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from jitgate.workflow.scheduler import Scheduler

ENV = "JG_BENCH_ADMIN_DSN"
AHEAD = timedelta(minutes=10)
SAMPLE = 25
MEMBERS = (
    "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid"
    " JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = %s AND m.rolname = ANY(%s)"
)


@contextmanager
def throwaway_target(server: str, count: int) -> Iterator[tuple[str, str, list[str]]]:
    """A database, a NOLOGIN group role, ``count`` existing logins; yields (admin DSN, group, logins)."""
    suffix = secrets.token_hex(4)
    database, group = f"jg_bench_{suffix}", f"jg_bench_ops_{suffix}"
    logins = [f"jg_bench_u{n:04d}_{suffix}" for n in range(count)]
    params: dict[str, Any] = {**conninfo_to_dict(server), "dbname": "postgres"}
    root_dsn = make_conninfo(**params)
    with psycopg.connect(root_dsn, autocommit=True) as root:
        root.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        root.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
        with root.transaction():
            for login in logins:
                root.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
        try:
            yield make_conninfo(**{**params, "dbname": database}), group, logins
        finally:
            root.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
            with root.transaction():
                for name in [*logins, group]:
                    root.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def policy(group: str, suffix: str) -> str:
    return f"""
targets:
  - name: orders-db
    kind: postgres
    admin_dsn_env: {ENV}
roles:
  - name: orders-admin
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [{group}], existing_login: "jg_bench_{{user}}_{suffix}"}}
    min_duration: 1s
    max_duration: 1h
    requesters: [group:dbas]
    approval: auto
"""


def grant_all(ctx: WorkflowContext, clock: ShiftedClock, count: int, spread: float) -> list[str]:
    """One grant per login, expiring evenly over ``spread`` seconds from a common start."""
    start = clock.now() + AHEAD
    made: list[str] = []
    began = time.perf_counter()
    for n in range(count):
        identity = Identity(name=f"u{n:04d}", groups=frozenset({"dbas"}))
        expires = start + timedelta(seconds=spread * n / count)
        view = requests.submit(
            ctx, identity, role="orders-admin", duration=expires - clock.now(), reason="bench"
        )
        made.append(str(view["grant"]["id"]))
        if (n + 1) % 250 == 0:
            print(f"  requested {n + 1:5d} grants ({(n + 1) / (time.perf_counter() - began):.0f}/s)")
    return made


def queue_counts(db: Database) -> dict[str, int]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(revocations.c.action, sa.func.count())
            .where(revocations.c.state == "pending")
            .group_by(revocations.c.action)
        ).all()
    return {str(action): int(n) for action, n in rows}


def run(server: str, count: int, spread: float, on_postgres: bool) -> None:
    clock = ShiftedClock()
    with (
        tempfile.TemporaryDirectory(prefix="jitgate-bench-") as tmp,
        throwaway_target(server, count) as (admin_dsn, group, logins),
        broker_store(Path(tmp), on_postgres) as db,
    ):
        suffix = group.rsplit("_", 1)[1]
        provider = PostgresProvider({ENV: admin_dsn})
        ctx = WorkflowContext(
            db=db,
            policies=PolicyHolder(parse_policy(policy(group, suffix))),
            audit=AuditLog(load_or_create_signing_key(Path(tmp) / "audit.pem")),
            clock=clock,
            providers={"postgres": provider},
        )
        store = "PostgreSQL" if on_postgres else "SQLite"
        print(f"{count} grants elevating an existing PostgreSQL login each over {spread:g} s; store {store}")
        scheduler = Scheduler(ctx, poll_seconds=1.0)
        ctx.wake_scheduler = scheduler.wake
        scheduler.start()
        try:
            began = time.perf_counter()
            made = grant_all(ctx, clock, count, spread)
            while queue_counts(db).get("elevate", 0):
                time.sleep(0.2)
            applied = time.perf_counter() - began
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                held = len(conn.execute(MEMBERS, [group, logins]).fetchall())
            print(f"  {held} of {count} elevated in {applied:.1f} s ({count / applied:.0f}/s)")
            watched = random.sample(logins, min(SAMPLE, count))
            watcher = Watcher(admin_dsn, watched, clock, query=MEMBERS, before=(group,))
            start = min(_expiries(db, made))
            clock.offset += start - LEAD - clock.now()
            ctx.wake_scheduler()
            watcher.start()
            deadline = time.monotonic() + LEAD.total_seconds() + spread + 300
            while time.monotonic() < deadline:
                time.sleep(0.5)
                with db.read() as conn:
                    ended = conn.execute(
                        sa.select(sa.func.count()).where(grants.c.state != "ACTIVE")
                    ).scalar_one()
                if ended == count and not queue_counts(db):
                    break
            watcher.stop()
        finally:
            scheduler.stop()
        provider.close()
        report(db, admin_dsn, group, logins, watcher)


def _expiries(db: Database, made: list[str]) -> list[Any]:
    with db.read() as conn:
        return list(conn.execute(sa.select(grants.c.expires_at).where(grants.c.id.in_(made))).scalars())


def report(db: Database, dsn: str, group: str, logins: list[str], watcher: Watcher) -> None:
    query = (
        sa.select(revocations.c.handle, grants.c.expires_at, grants.c.ended_at, revocations.c.done_at)
        .join(grants, grants.c.id == revocations.c.grant_id)
        .where(revocations.c.state == "done", revocations.c.action == "withdraw")
    )
    with db.read() as conn:
        rows = [(r[0], r[1], r[2], r[3]) for r in conn.execute(query)]
        account_of = {
            str(handle): str(record["account"])
            for handle, record in conn.execute(sa.select(credentials.c.handle, credentials.c.record))
        }
    with psycopg.connect(dsn, autocommit=True) as conn:
        left = len(conn.execute(MEMBERS, [group, logins]).fetchall())
    print(f"  withdrawn {len(rows)} of {len(logins)}; memberships left in pg_auth_members: {left}")
    if not rows:
        return
    gone = [(done - expires).total_seconds() for _, expires, _, done in rows]
    p50, p99 = percentiles(gone)
    print(f"  expires_at -> elevation gone (done_at): p50 {ms(p50)}   p99 {ms(p99)}   max {ms(max(gone))}")
    e50, e99 = percentiles([(ended - expires).total_seconds() for _, expires, ended, _ in rows])
    print(f"    of which expires_at -> grant ended:  p50 {ms(e50)}   p99 {ms(e99)}")
    r50, r99 = percentiles([(done - ended).total_seconds() for _, _, ended, done in rows])
    print(f"    and grant ended -> elevation gone:   p50 {ms(r50)}   p99 {ms(r99)}")
    if watcher.gone:
        done_of = {account_of[handle]: done for handle, _, _, done in rows if handle in account_of}
        drift = [
            (seen - done_of[login]).total_seconds()
            for login, seen in watcher.gone.items()
            if login in done_of
        ]
        print(
            f"  pg_auth_members cross-check, {len(drift)} logins watched every ~5 ms: seen gone minus done_at"
            f" median {ms(statistics.median(drift))}, range {ms(min(drift))} .. {ms(max(drift))}"
        )
    spread = max(done for *_, done in rows) - min(expires for _, expires, _, _ in rows)
    print(
        f"  first expires_at to last elevation gone: {spread.total_seconds():.1f} s ({len(rows)} withdrawals)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which the grants expire")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--postgres", action="store_true", help="keep the broker's own store on PostgreSQL")
    args = parser.parse_args()
    run(args.server, args.count, args.spread, args.postgres)


if __name__ == "__main__":
    main()
