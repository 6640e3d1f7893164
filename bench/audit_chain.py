"""Audit chain benchmark: append rate and ``verify`` time (and memory) on SQLite and PostgreSQL.

    .venv/bin/python bench/audit_chain.py                    # 1,000,000 on SQLite, 100,000 on PostgreSQL
    .venv/bin/python bench/audit_chain.py --events 100000 --pg-events 0

Appends go through ``AuditLog.append_many`` inside ``Database.write()`` transactions, as the
workflow does at the end of each transaction: first ``--single`` events one per transaction, then
the rest in batches of ``--batch`` (one head lock and one head signature per batch).
``verify`` and ``export`` run in a fresh child process so that its peak RSS is theirs alone (on
SQLite it includes the page cache that ``store/db.py`` configures).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from jitgate.audit import checkpoint, keys
from jitgate.audit.chain import AuditLog, Event, read_head
from jitgate.audit.query import export
from jitgate.audit.verify import verify
from jitgate.store.db import Database
from jitgate.store.migrate import upgrade
from jitgate.store.tables import metadata

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
START = datetime(2026, 1, 1, tzinfo=UTC)
ACTIONS = ("request.created", "review.approved", "grant.activated", "credential.issued", "grant.expired")


def fill(db: Database, log: AuditLog, total: int, single: int, batch: int) -> None:
    n = 0

    def one() -> Event:
        nonlocal n
        event = Event.checked(
            at=START + timedelta(milliseconds=n),
            actor=f"user{n % 50}",
            action=ACTIONS[n % len(ACTIONS)],
            request_id=f"req{n // 5:08d}",
            grant_id=f"gr{n // 5:08d}" if n % 5 >= 2 else None,
            role=("prod-shell", "orders-read", "db-admin")[n % 3],
            target="web-prod-1",
            details={"reason": f"INC-{n // 5} disk full on web-prod-1", "duration_s": 3600, "n": n},
        )
        n += 1
        return event

    first = min(single, total)
    t0 = time.perf_counter()
    for _ in range(first):
        with db.write() as conn:
            log.append_many(conn, [one()])
    elapsed = time.perf_counter() - t0
    if first:
        print(f"  append, 1 event per transaction:  {first:>9,} events  {first / elapsed:>9,.0f} events/s")
    rest = total - first
    t0 = time.perf_counter()
    last_report = t0
    while n < total:
        with db.write() as conn:
            log.append_many(conn, [one() for _ in range(min(batch, total - n))])
        now = time.perf_counter()
        if now - last_report > 30:
            print(f"    … {n:,} events", flush=True)
            last_report = now
    elapsed = time.perf_counter() - t0
    if rest:
        print(
            f"  append, {batch} events per transaction: {rest:>9,} events  {rest / elapsed:>9,.0f} events/s"
        )


def measure_verify(url: str, key_path: Path) -> None:
    """Run verify and export in a child process, whose peak memory is then theirs alone."""
    subprocess.run([sys.executable, __file__, "--child-verify", url, str(key_path)], check=True)


def child_verify(url: str, key_path: Path) -> None:
    public = keys.load_signing_key(key_path).public_key()
    db = Database(url)
    base = _memory_mib("VmHWM")
    t0 = time.perf_counter()
    with db.read() as conn:
        result = verify(conn, public)
    elapsed = time.perf_counter() - t0
    print(
        f"  verify:  {result.count:>9,} events in {elapsed:6.1f} s  ({result.count / elapsed:,.0f} events/s)"
    )
    if not result.ok:
        print(f"  verify FAILED: {result.problem}")
    t0 = time.perf_counter()
    with db.read() as conn, Path(os.devnull).open("w") as out:
        written = export(conn, out)
    elapsed = time.perf_counter() - t0
    print(f"  export:  {written:>9,} events in {elapsed:6.1f} s  ({written / elapsed:,.0f} lines/s)")
    db.dispose()
    peak = _memory_mib("VmHWM")
    print(f"  verify+export process: peak RSS {peak:,.0f} MiB (interpreter {base:,.0f} MiB before reading)")


def _memory_mib(field: str) -> float:
    """A Linux memory figure of this process (ru_maxrss would include the parent's, from fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def broker_log(db: Database, workdir: Path) -> AuditLog:
    """The audit log as the broker sets it up: guarded by a checkpoint file that exists."""
    path = checkpoint.default_path(workdir)
    log = AuditLog(keys.load_for(workdir), checkpoint_path=path)
    with db.write() as conn:
        log.append(conn, at=START, actor="system", action="policy.loaded")
    with db.read() as conn:
        head = read_head(conn)
        if head is not None:
            checkpoint.Writer(path).update(head, checkpoint.hash_at(conn))
    return log


def bench_sqlite(workdir: Path, args: argparse.Namespace) -> None:
    print(f"SQLite (WAL, synchronous=NORMAL), {args.events:,} events, file in {workdir}")
    workdir.mkdir(parents=True)
    url = f"sqlite:///{workdir / 'jitgate.db'}"
    db = Database(url)
    upgrade(db.engine)
    log = broker_log(db, workdir)
    fill(db, log, args.events, args.single, args.batch)
    db.dispose()
    size = (workdir / "jitgate.db").stat().st_size
    print(f"  database file: {size / 2**20:,.0f} MiB")
    measure_verify(url, keys.default_key_path(workdir))


def bench_postgres(workdir: Path, args: argparse.Namespace) -> None:
    print(f"PostgreSQL (127.0.0.1), {args.pg_events:,} events")
    admin = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"jg_audit_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = f"{PG_SERVER}/{name}"
    try:
        db = Database(url)
        try:
            upgrade(db.engine)
        except sa.exc.DBAPIError as exc:
            # Keep the benchmark useful while a migration is broken on PostgreSQL; say so loudly.
            print(
                f"  NOTE: migrations failed on PostgreSQL ({str(exc.orig).splitlines()[0]}); using create_all"
            )
            metadata.create_all(db.engine)
        log = broker_log(db, workdir)
        fill(db, log, args.pg_events, min(args.single, args.pg_events), args.batch)
        db.dispose()
        measure_verify(url, keys.default_key_path(workdir))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events on SQLite (0: skip)")
    parser.add_argument("--pg-events", type=int, default=100_000, help="events on PostgreSQL (0: skip)")
    parser.add_argument("--single", type=int, default=10_000, help="first N events one per transaction")
    parser.add_argument("--batch", type=int, default=1_000, help="events per transaction after that")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--child-verify", nargs=2, metavar=("URL", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_verify:
        child_verify(args.child_verify[0], Path(args.child_verify[1]))
        return
    with tempfile.TemporaryDirectory(prefix="jg-audit-bench-", dir=args.dir) as tmp:
        if args.events:
            bench_sqlite(Path(tmp) / "sqlite", args)
        if args.pg_events:
            bench_postgres(Path(tmp) / "pg", args)


if __name__ == "__main__":
    main()
