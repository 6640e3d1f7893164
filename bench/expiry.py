"""Expiry: how late grants end (actual end minus expires_at) with 100,000 active grants, and what
one expiry costs with 1,000 versus 100,000 grants active (it should not grow with the count).

Runs the real scheduler thread with the system clock on a real database (SQLite by default,
``--postgres`` for PostgreSQL). Run: .venv/bin/python bench/expiry.py [--postgres]
"""

from __future__ import annotations

import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from common import percentiles

from jitgate.audit.chain import AuditLog
from jitgate.audit.keys import load_or_create_signing_key
from jitgate.clock import SystemClock
from jitgate.policy.loader import parse_policy
from jitgate.store.db import Database
from jitgate.store.migrate import upgrade
from jitgate.store.tables import grants, requests
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from jitgate.workflow.scheduler import Scheduler, expire_due

POLICY = """
targets:
  - {name: web-1, kind: ssh, address: 127.0.0.1}
roles:
  - name: r
    targets: {names: [web-1]}
    ssh: {logins: [deploy]}
    max_duration: 1d
    requesters: [group:g]
    approval: auto
"""
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def add_grants(db: Database, count: int, expires: list[datetime] | datetime) -> list[str]:
    """Insert active grants (and their requests) in bulk, as if approved a moment ago."""
    now = datetime.now(UTC)
    ids = [secrets.token_hex(6) for _ in range(count)]
    ends = expires if isinstance(expires, list) else [expires] * count
    with db.write() as conn:
        for start in range(0, count, 5000):
            chunk = range(start, min(count, start + 5000))
            conn.execute(
                requests.insert(),
                [
                    {
                        "id": f"r-{ids[i]}",
                        "kind": "access",
                        "requester": f"u{i % 500}",
                        "role": "r",
                        "targets": ["web-1"],
                        "reason": "",
                        "duration_s": 3600,
                        "state": "ACTIVE",
                        "created_at": now,
                        "review_deadline": now,
                        "start_at": None,
                        "extends_grant_id": None,
                        "break_glass": False,
                        "auto_approved": "approval: auto",
                        "decided_at": now,
                    }
                    for i in chunk
                ],
            )
            conn.execute(
                grants.insert(),
                [
                    {
                        "id": f"g-{ids[i]}",
                        "request_id": f"r-{ids[i]}",
                        "holder": f"u{i % 500}",
                        "role": "r",
                        "targets": ["web-1"],
                        "state": "ACTIVE",
                        "starts_at": now,
                        "expires_at": ends[i],
                        "break_glass": False,
                        "expiry_warned": True,
                    }
                    for i in chunk
                ],
            )
    if not db.is_sqlite:
        # A real database has autovacuum's statistics; a bulk load this size needs them made now.
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    return [f"g-{i}" for i in ids]


def context(db: Database, tmp: Path) -> WorkflowContext:
    audit = AuditLog(load_or_create_signing_key(tmp / "audit.pem"))
    return WorkflowContext(
        db=db, policies=PolicyHolder(parse_policy(POLICY)), audit=audit, clock=SystemClock()
    )


def cost_per_expiry(db: Database, ctx: WorkflowContext, due: int) -> float:
    add_grants(db, due, datetime.now(UTC) - timedelta(seconds=1))
    start = time.perf_counter()
    ended = 0
    while (n := expire_due(ctx)) > 0:
        ended += n
    elapsed = time.perf_counter() - start
    assert ended == due, (ended, due)
    return elapsed / due * 1e6


def lag(db: Database, ctx: WorkflowContext, count: int, spread: float) -> list[float]:
    base = datetime.now(UTC) + timedelta(seconds=2)
    ends = [base + timedelta(seconds=spread * i / count) for i in range(count)]
    ids = add_grants(db, count, ends)
    scheduler = Scheduler(ctx, poll_seconds=1.0)
    scheduler.start()
    try:
        deadline = time.monotonic() + spread + 30
        while time.monotonic() < deadline:
            time.sleep(0.5)
            with db.read() as conn:
                left = conn.execute(
                    sa.select(sa.func.count()).where(grants.c.id.in_(ids), grants.c.state == "ACTIVE")
                ).scalar_one()
            if left == 0:
                break
    finally:
        scheduler.stop()
    with db.read() as conn:
        rows = conn.execute(
            sa.select(grants.c.expires_at, grants.c.ended_at).where(grants.c.id.in_(ids))
        ).all()
    return [(ended - expires).total_seconds() for expires, ended in rows if ended is not None]


def run(url: str, tmp: Path, label: str) -> None:
    db = Database(url)
    upgrade(db.engine)
    ctx = context(db, tmp)
    far = datetime.now(UTC) + timedelta(days=1)
    add_grants(db, 1_000, far)
    small = cost_per_expiry(db, ctx, 1_000)
    add_grants(db, 99_000, far)
    big = cost_per_expiry(db, ctx, 1_000)
    samples = lag(db, ctx, 500, spread=10.0)
    p50, p99 = percentiles(samples)
    print(f"[{label}] cost per expiry (end + audit + revocation bookkeeping, batches of 200):")
    print(f"    with   1,000 active grants: {small:8.0f} us")
    print(f"    with 100,000 active grants: {big:8.0f} us   ({big / small:.2f}x)")
    print(f"[{label}] expiry lag, 500 grants ending over 10 s among 100,000 active, real scheduler thread:")
    worst = max(samples) * 1000
    print(f"    p50 {p50 * 1000:.1f} ms   p99 {p99 * 1000:.1f} ms   max {worst:.1f} ms   (n={len(samples)})")
    db.dispose()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="jitgate-bench-") as tmp:
        if "--postgres" in sys.argv:
            name = f"jg_bench_{secrets.token_hex(4)}"
            admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            try:
                run(PG.rsplit("/", 1)[0] + f"/{name}", Path(tmp), "PostgreSQL")
            finally:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        else:
            run(f"sqlite:///{tmp}/bench.db", Path(tmp), "SQLite")


if __name__ == "__main__":
    main()
