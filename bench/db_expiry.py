"""Time from a grant's ``expires_at`` to its PostgreSQL login being gone, p50/p99, with 1,000 grants
that all expire within the same minute, each holding a login issued through the workflow.

    .venv/bin/python bench/db_expiry.py                   # 1,000 grants ending over 60 s
    .venv/bin/python bench/db_expiry.py --spread 0        # ... all at the same instant
    .venv/bin/python bench/db_expiry.py --count 200 --postgres   # the broker's own store on PostgreSQL
    .venv/bin/python bench/db_expiry.py --spread 0 --workers 1   # revocations one at a time

Everything is real but the broker runs in-process: ``requests.submit`` and ``credentials.issue``
with the real ``PostgresProvider`` and a CREATEROLE-only admin (a throwaway database, group role
and admin, created and dropped here), then the real ``Scheduler`` threads expire the grants and
revoke the logins (NOLOGIN, end sessions, REASSIGN/DROP OWNED, DROP ROLE).

Issuing 1,000 logins takes longer than a minute may allow, so the broker's clock runs ahead of the
wall clock by an offset: the grants are issued to expire in one minute ten minutes ahead, then the
offset jumps so that minute starts three seconds from now, and from there time runs normally. Every
figure is measured on that one clock.

"Gone" is the revocation's ``done_at`` (written right after ``DROP ROLE`` returned) minus the
grant's ``expires_at``. A sample of logins is watched in ``pg_roles`` meanwhile, to check that
``done_at`` tells when the role really disappeared; at the end no login may be left. Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import functools
import random
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from common import percentiles
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jitgate.audit.chain import AuditLog
from jitgate.audit.keys import load_or_create_signing_key
from jitgate.domain.identity import Identity
from jitgate.policy.loader import parse_policy
from jitgate.providers.postgres import PostgresProvider
from jitgate.store.db import Database
from jitgate.store.migrate import upgrade
from jitgate.store.tables import grants, revocations
from jitgate.workflow import credentials, requests
from jitgate.workflow import scheduler as scheduling
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from jitgate.workflow.scheduler import Scheduler

ENV = "JG_BENCH_ADMIN_DSN"
BROKER_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
AHEAD = timedelta(minutes=10)
LEAD = timedelta(seconds=3)
SAMPLE = 25


class ShiftedClock:
    """The wall clock moved by ``offset``; one instance is the broker's only clock."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@contextmanager
def throwaway_target(server: str) -> Iterator[tuple[str, str, str]]:
    """A database, a NOLOGIN group role and a CREATEROLE-only admin; yields (admin DSN, group, root DSN)."""
    suffix = secrets.token_hex(4)
    database, admin, group = f"jg_bench_{suffix}", f"jg_bench_admin_{suffix}", f"jg_bench_ro_{suffix}"
    password = secrets.token_urlsafe(16)
    params: dict[str, Any] = {**conninfo_to_dict(server), "dbname": "postgres"}
    root_dsn = make_conninfo(**params)
    with psycopg.connect(root_dsn, autocommit=True) as root:
        root.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        root.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                sql.Identifier(admin), sql.Literal(password)
            )
        )
        root.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
        try:
            yield (
                make_conninfo(**{**params, "user": admin, "password": password, "dbname": database}),
                group,
                root_dsn,
            )
        finally:
            root.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
            leftovers = root.execute(
                "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid"
                " JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = %s",
                [group],
            ).fetchall()
            for name in [row[0] for row in leftovers] + [admin, group]:
                root.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@contextmanager
def broker_store(tmp: Path, on_postgres: bool) -> Iterator[Database]:
    if not on_postgres:
        db = Database(f"sqlite:///{tmp}/broker.db")
        upgrade(db.engine)
        yield db
        db.dispose()
        return
    name = f"jg_bench_broker_{secrets.token_hex(4)}"
    admin = sa.create_engine(BROKER_PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    db = Database(BROKER_PG.rsplit("/", 1)[0] + f"/{name}")
    try:
        upgrade(db.engine)
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


def policy(group: str) -> str:
    return f"""
targets:
  - name: orders-db
    kind: postgres
    admin_dsn_env: {ENV}
roles:
  - name: orders-read
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [{group}]}}
    min_duration: 1s
    max_duration: 1h
    requesters: [group:analysts]
    approval: auto
"""


def issue_all(
    ctx: WorkflowContext, clock: ShiftedClock, count: int, spread: float
) -> tuple[datetime, dict[str, str]]:
    """One grant and one login per user, expiring evenly over ``spread`` seconds from a common start."""
    start = clock.now() + AHEAD
    handles: dict[str, str] = {}
    began = time.perf_counter()
    for n in range(count):
        identity = Identity(name=f"u{n:04d}", groups=frozenset({"analysts"}))
        expires = start + timedelta(seconds=spread * n / count)
        view = requests.submit(
            ctx, identity, role="orders-read", duration=expires - clock.now(), reason="bench"
        )
        grant_id = str(view["grant"]["id"])
        _, issued = credentials.issue(ctx, identity, "orders-db")
        handles[grant_id] = issued.handle
        if (n + 1) % 250 == 0:
            rate = (n + 1) / (time.perf_counter() - began)
            print(f"  issued {n + 1:5d} grants with logins ({rate:.0f}/s)", flush=True)
    return start, handles


PRESENT = "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)"


class Watcher:
    """Polls PostgreSQL for a few names and notes, on the broker's clock, when each is gone.

    ``query`` returns the names still present, given ``*before`` and then the list of names
    watched (by default: logins still in ``pg_roles``).
    """

    def __init__(
        self,
        root_dsn: str,
        logins: list[str],
        clock: ShiftedClock,
        *,
        query: str = PRESENT,
        before: tuple[str, ...] = (),
    ) -> None:
        self._dsn = root_dsn
        self._query, self._before = query, before
        self._clock = clock
        self.gone: dict[str, datetime] = {}
        self._left = set(logins)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            while self._left and not self._stop.is_set():
                rows = conn.execute(self._query, [*self._before, list(self._left)])
                seen = self._clock.now()
                present = {row[0] for row in rows}
                for login in self._left - present:
                    self.gone[login] = seen
                self._left &= present
                time.sleep(0.005)


def measure(db: Database, handles: dict[str, str]) -> list[tuple[str, datetime, datetime, datetime]]:
    """(handle, expires_at, ended_at, done_at) of every finished revocation of the benchmark's grants."""
    query = (
        sa.select(revocations.c.handle, grants.c.expires_at, grants.c.ended_at, revocations.c.done_at)
        .join(grants, grants.c.id == revocations.c.grant_id)
        .where(revocations.c.state == "done")
    )
    wanted = set(handles.values())
    with db.read() as conn:
        return [(r[0], r[1], r[2], r[3]) for r in conn.execute(query) if r[0] in wanted]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def run(server: str, count: int, spread: float, on_postgres: bool, workers: int) -> None:
    # The scheduler's revocation loop takes ``run_revocations`` from the module when it is built.
    scheduling.run_revocations = functools.partial(scheduling.run_revocations, workers=workers)  # type: ignore[assignment]
    clock = ShiftedClock()
    with (
        tempfile.TemporaryDirectory(prefix="jitgate-bench-") as tmp,
        throwaway_target(server) as (admin_dsn, group, root_dsn),
        broker_store(Path(tmp), on_postgres) as db,
    ):
        provider = PostgresProvider({ENV: admin_dsn})
        ctx = WorkflowContext(
            db=db,
            policies=PolicyHolder(parse_policy(policy(group))),
            audit=AuditLog(load_or_create_signing_key(Path(tmp) / "audit.pem")),
            clock=clock,
            providers={"postgres": provider},
        )
        store = "PostgreSQL" if on_postgres else "SQLite"
        print(
            f"{count} grants with a PostgreSQL login each, expiring over {spread:g} s; broker on {store};"
            f" {workers} revocation worker(s)"
        )
        start, handles = issue_all(ctx, clock, count, spread)

        watched = random.sample(sorted(handles.values()), min(SAMPLE, count))
        watcher = Watcher(root_dsn, watched, clock)
        scheduler = Scheduler(ctx, poll_seconds=1.0)
        ctx.wake_scheduler = scheduler.wake
        clock.offset += start - LEAD - clock.now()
        watcher.start()
        scheduler.start()
        try:
            deadline = time.monotonic() + LEAD.total_seconds() + spread + 300
            while time.monotonic() < deadline:
                time.sleep(0.5)
                with db.read() as conn:
                    left = conn.execute(
                        sa.select(sa.func.count()).where(revocations.c.state == "pending")
                    ).scalar_one()
                    ended = conn.execute(
                        sa.select(sa.func.count()).where(grants.c.state != "ACTIVE")
                    ).scalar_one()
                if ended == count and left == 0:
                    break
        finally:
            scheduler.stop()
            watcher.stop()
        provider.close()

        rows = measure(db, handles)
        gone = [(done - expires).total_seconds() for _, expires, _, done in rows]
        ended_lag = [(ended - expires).total_seconds() for _, expires, ended, _ in rows]
        revoke_lag = [(done - ended).total_seconds() for _, _, ended, done in rows]
        with psycopg.connect(root_dsn, autocommit=True) as root:
            still = root.execute(
                "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", [list(handles.values())]
            ).fetchone()
        done_at = {handle: done for handle, _, _, done in rows}
        drift = [
            (watcher.gone[h] - done_at[h]).total_seconds()
            for h in watched
            if h in watcher.gone and h in done_at
        ]

        print(f"  revoked {len(rows)} of {count}; logins left in pg_roles: {still[0] if still else '?'}")
        if not gone:
            return
        p50, p99 = percentiles(gone)
        print(f"  expires_at -> role gone (done_at):   p50 {ms(p50)}   p99 {ms(p99)}   max {ms(max(gone))}")
        e50, e99 = percentiles(ended_lag)
        print(f"    of which expires_at -> grant ended: p50 {ms(e50)}   p99 {ms(e99)}")
        r50, r99 = percentiles(revoke_lag)
        print(f"    and grant ended -> role gone:      p50 {ms(r50)}   p99 {ms(r99)}")
        if drift:
            print(
                f"  pg_roles cross-check, {len(drift)} logins watched every ~5 ms: seen gone minus done_at"
                f" median {ms(statistics.median(drift))}, range {ms(min(drift))} .. {ms(max(drift))}"
            )
        last = max(done for _, _, _, done in rows) - min(expires for _, expires, _, _ in rows)
        print(f"  first expires_at to last role gone: {last.total_seconds():.1f} s ({len(rows)} revocations)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which the grants expire")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--postgres", action="store_true", help="keep the broker's own store on PostgreSQL")
    parser.add_argument("--workers", type=int, default=scheduling.REVOCATION_WORKERS)
    args = parser.parse_args()
    run(args.server, args.count, args.spread, args.postgres, args.workers)


if __name__ == "__main__":
    main()
