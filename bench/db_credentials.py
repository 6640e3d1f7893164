"""PostgreSQL credentials issued and revoked per second: through the provider vs the bare statements.

    .venv/bin/python bench/db_credentials.py                 # 200 of each
    .venv/bin/python bench/db_credentials.py --count 500 --server postgresql://postgres@127.0.0.1:5432

Both sides run one at a time, in the same run, as the same CREATEROLE-only admin in a throwaway
database (created and dropped here, with its roles):

* provider: ``PostgresProvider.issue`` (connect, check the member_of roles, ``CREATE ROLE … LOGIN
  PASSWORD … VALID UNTIL … IN ROLE …``, ``GRANT login TO CURRENT_USER``, commit), then
  ``revoke`` (connect, ``NOLOGIN``, terminate sessions, ``REASSIGN OWNED``/``DROP OWNED``,
  ``DROP ROLE``);
* floor: on one open psycopg connection, the same ``CREATE ROLE … LOGIN PASSWORD … VALID UNTIL …
  IN ROLE …`` statements, then ``DROP ROLE``.

A third line times bare connections, the largest part of the difference. Figures are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jitgate.clock import SystemClock
from jitgate.domain.identity import Identity
from jitgate.domain.model import Grant, RequestState
from jitgate.policy.model import PostgresAccess, Role, Target, TargetSelector
from jitgate.providers.base import IssueRequest, ProviderContext
from jitgate.providers.postgres import create_provider

ENV = "JG_BENCH_ADMIN_DSN"


def timed(count: int, step: Callable[[int], None]) -> tuple[float, list[float]]:
    """Run ``step`` ``count`` times; return total seconds and each call's seconds."""
    each: list[float] = []
    start = time.perf_counter()
    for n in range(count):
        t0 = time.perf_counter()
        step(n)
        each.append(time.perf_counter() - t0)
    return time.perf_counter() - start, each


def line(label: str, count: int, total: float, each: list[float]) -> str:
    cuts = statistics.quantiles(each, n=100)
    p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    return f"  {label:<26} {count / total:8.1f}/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"


def request_for(target: Target, role: Role, n: int) -> IssueRequest:
    now = SystemClock().now()
    grant = Grant(
        id=f"bench-{n}",
        request_id=f"bench-{n}",
        holder=f"bench{n}",
        role=role.name,
        targets=(target.name,),
        starts_at=now,
        expires_at=now + timedelta(minutes=30),
        state=RequestState.ACTIVE,
    )
    return IssueRequest(grant=grant, role=role, target=target, identity=Identity(name=f"bench{n}"), now=now)


def run(server: str, count: int) -> None:
    suffix = secrets.token_hex(4)
    database, admin, group = f"jg_bench_{suffix}", f"jg_bench_admin_{suffix}", f"jg_bench_ro_{suffix}"
    admin_password = secrets.token_urlsafe(16)
    params: dict[str, Any] = {**conninfo_to_dict(server), "dbname": "postgres"}
    admin_dsn = make_conninfo(**{**params, "user": admin, "password": admin_password, "dbname": database})
    with psycopg.connect(make_conninfo(**params), autocommit=True) as root:
        root.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        root.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                sql.Identifier(admin), sql.Literal(admin_password)
            )
        )
        root.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
        try:
            measure(admin_dsn, group, count)
        finally:
            root.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
            leftovers = root.execute(
                "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid"
                " JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = %s",
                [group],
            ).fetchall()
            for name in [row[0] for row in leftovers] + [admin, group]:
                root.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def measure(admin_dsn: str, group: str, count: int) -> None:
    ctx = ProviderContext(data_dir=Path(), environ={ENV: admin_dsn}, clock=SystemClock())
    provider = create_provider(ctx)
    target = Target(name="bench-db", kind="postgres", admin_dsn_env=ENV)
    role = Role(
        name="bench",
        targets=TargetSelector(names=("bench-db",)),
        postgres=PostgresAccess(member_of=(group,)),
        max_duration=timedelta(hours=1),
        requesters=("group:bench",),
        approval="auto",
    )

    handles: list[str] = []

    def provider_issue(n: int) -> None:
        request = request_for(target, role, n)
        handles.append(provider.issue(request, provider.new_handle(request)).handle)

    issue_total, issue_each = timed(count, provider_issue)
    revoke_total, revoke_each = timed(count, lambda n: provider.revoke(target, handles[n]))

    until = (SystemClock().now() + timedelta(minutes=30)).isoformat()
    names = [f"jit_floor_{n:012x}" for n in range(count)]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        create = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} VALID UNTIL {} IN ROLE {}")
        create_total, create_each = timed(
            count,
            lambda n: conn.execute(
                create.format(
                    sql.Identifier(names[n]),
                    sql.Literal(secrets.token_urlsafe(32)),
                    sql.Literal(until),
                    sql.Identifier(group),
                )
            ),
        )
        drop_total, drop_each = timed(
            count, lambda n: conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(names[n])))
        )
    connect_total, connect_each = timed(count, lambda _: psycopg.connect(admin_dsn).close())

    pairs_provider = count / (issue_total + revoke_total)
    pairs_floor = count / (create_total + drop_total)
    print(f"PostgreSQL credentials, {count} of each, one at a time, CREATEROLE-only admin")
    print(line("provider issue", count, issue_total, issue_each))
    print(line("provider revoke", count, revoke_total, revoke_each))
    print(line("floor CREATE ROLE", count, create_total, create_each))
    print(line("floor DROP ROLE", count, drop_total, drop_each))
    print(line("bare connect (for scale)", count, connect_total, connect_each))
    print(f"  issued+revoked per second: provider {pairs_provider:.1f}/s, floor {pairs_floor:.1f}/s")
    print(f"  provider costs {pairs_floor / pairs_provider:.1f}x the floor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    run(args.server, args.count)


if __name__ == "__main__":
    main()
