"""Elevation of an existing PostgreSQL login through the broker's workflow and its durable queue,
against the real server: refused up front for a login that does not exist, applied when the grant
becomes active, taken back at expiry (also when the server was down then), never early for another
grant of the same role, and never taking away a membership the login held before."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dbkit import PG_ENV, PG_HOST, PG_PORT, PgEnv, TcpProxy, provider_context
from pgroles import PgRoles, ended, pg_roles, reads_orders

from jitgate.api.problems import status_of
from jitgate.audit.chain import AuditLog
from jitgate.audit.query import query
from jitgate.clock import FrozenClock
from jitgate.domain.identity import Identity
from jitgate.errors import PolicyDenied
from jitgate.policy.loader import parse_policy
from jitgate.providers.postgres import PostgresProvider, create_provider
from jitgate.store import issuance
from jitgate.store import queries as q
from jitgate.store.db import Database
from jitgate.workflow import requests as svc
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from jitgate.workflow.scheduler import expire_due, run_revocations

pytestmark = pytest.mark.postgres


def policy_for(item: str) -> str:
    roles = "".join(
        f"""
  - name: {name}
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [{item}], existing_login: "{{user}}"}}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto"""
        for name in ("orders-admin", "orders-admin-too")
    )
    return f"""
targets:
  - name: orders-db
    kind: postgres
    admin_dsn_env: {PG_ENV}
roles:{roles}
"""


@pytest.fixture
def roles(pg_env: PgEnv) -> Iterator[PgRoles]:
    with pg_roles(pg_env) as made:
        yield made


@pytest.fixture
def item(roles: PgRoles) -> str:
    return roles.role(reads_orders=True)


@pytest.fixture
def make_ctx(  # noqa: PLR0917 - fixtures
    db: Database, audit: AuditLog, clock: FrozenClock, pg_env: PgEnv, item: str, tmp_path: Path
) -> Iterator[Callable[[int], WorkflowContext]]:
    """A workflow context whose PostgreSQL provider reaches the server on ``port``."""
    providers: list[PostgresProvider] = []

    def make(port: int = PG_PORT) -> WorkflowContext:
        provider = create_provider(provider_context(tmp_path, {PG_ENV: pg_env.admin_dsn(port=port)}))
        assert isinstance(provider, PostgresProvider)
        providers.append(provider)
        return WorkflowContext(
            db=db,
            policies=PolicyHolder(parse_policy(policy_for(item))),
            audit=audit,
            clock=clock,
            providers={"postgres": provider},
            revocation_backoff_seconds=1.0,
        )

    yield make
    for provider in providers:
        provider.close()


def person(login: str) -> Identity:
    return Identity(name=login, groups=frozenset({"engineers"}))


def grant_of(ctx: WorkflowContext, login: str, role: str = "orders-admin", minutes: int = 10) -> str:
    view = svc.submit(ctx, person(login), role=role, reason="INC-7", duration=f"{minutes}m")
    assert view["state"] == "ACTIVE"
    return str(view["grant"]["id"])


def drain(ctx: WorkflowContext, clock: FrozenClock) -> None:
    """Run the queue until nothing is due; work held back behind the same account waits a moment."""
    for _ in range(10):
        if run_revocations(ctx) == (0, 0):
            return
        clock.advance(timedelta(seconds=1))


def events(ctx: WorkflowContext, action: str) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        return [dict(e.details) for e in query(conn, action=action)]


def test_a_login_that_does_not_exist_is_refused_with_403_and_nothing_is_created(
    make_ctx: Callable[..., WorkflowContext], roles: PgRoles
) -> None:
    ctx, login = make_ctx(), "jg_el_nobody_here"
    with pytest.raises(PolicyDenied) as refused:
        svc.submit(ctx, person(login), role="orders-admin", reason="INC-7", duration="10m")
    message = str(refused.value)
    assert status_of(refused.value) == 403
    assert message == (
        f"account {login} does not exist on target orders-db"
        " (jitgate elevates existing accounts, never creates them)"
    )
    assert "\n" not in message
    assert not roles.exists(login)
    with ctx.db.read() as conn:
        assert q.list_grants(conn) == []
        assert issuance.pending_revocations(conn) == []


def test_a_superuser_login_is_refused_up_front(
    make_ctx: Callable[..., WorkflowContext], roles: PgRoles
) -> None:
    ctx, login = make_ctx(), roles.login("SUPERUSER")
    with pytest.raises(PolicyDenied, match=f"login {login} on target orders-db is a superuser"):
        svc.submit(ctx, person(login), role="orders-admin", reason="INC-7", duration="10m")


def test_the_elevation_works_for_the_window_and_every_session_loses_it_at_expiry(
    make_ctx: Callable[..., WorkflowContext], roles: PgRoles, item: str, clock: FrozenClock
) -> None:
    ctx, login = make_ctx(), roles.login()
    grant_of(ctx, login)
    assert roles.memberships(login) == []  # nothing happens inside the request's transaction
    assert run_revocations(ctx) == (1, 0)
    inherits, sets_role = roles.connect(login), roles.connect(login)
    assert reads_orders(inherits)
    sets_role.execute(f"SET ROLE {item}")
    (issued,) = events(ctx, "credential.issued")
    assert issued["elevation"]["account"] == login
    assert issued["elevation"]["granted"] == [item]
    assert issued["elevation"]["granted_by"] == roles.env.admin

    clock.advance(timedelta(minutes=10))
    assert expire_due(ctx) == 1
    assert run_revocations(ctx) == (1, 0)

    assert ended(inherits)
    assert ended(sets_role)
    assert not reads_orders(roles.connect(login))
    assert roles.memberships(login) == []
    (revoked,) = events(ctx, "credential.revoked")
    assert revoked["outcome"] == {
        "account": login,
        "items": {item: "withdrawn"},
        "revoked": [item],
        "sessions_ended": 2,
    }


def test_the_server_down_at_expiry_and_back_later_still_ends_with_the_role_revoked(
    make_ctx: Callable[..., WorkflowContext],
    roles: PgRoles,
    item: str,
    clock: FrozenClock,
    tcp_proxy: Callable[[tuple[str, int]], TcpProxy],
) -> None:
    proxy = tcp_proxy((PG_HOST, PG_PORT))
    ctx, login = make_ctx(proxy.port), roles.login()
    grant_of(ctx, login)
    drain(ctx, clock)
    session = roles.connect(login)  # straight to the server, not through the proxy
    assert reads_orders(session)

    proxy.stop()
    clock.advance(timedelta(minutes=10))
    assert expire_due(ctx) == 1
    assert run_revocations(ctx) == (0, 1)
    with ctx.db.read() as conn:
        (pending,) = issuance.pending_revocations(conn)
    assert pending["action"] == "withdraw"
    assert "cannot connect" in pending["last_error"]
    assert roles.memberships(login) == [(item, roles.env.admin, False)]
    assert reads_orders(session)

    proxy.start()
    clock.advance(timedelta(minutes=1))
    assert run_revocations(ctx) == (1, 0)
    assert roles.memberships(login) == []
    assert ended(session)
    with ctx.db.read() as conn:
        assert issuance.pending_revocations(conn) == []
    (failed,) = events(ctx, "revocation.failed")
    assert "cannot connect" in failed["error"]


def test_two_grants_of_the_same_role_to_the_same_login_do_not_end_each_other(
    make_ctx: Callable[..., WorkflowContext], roles: PgRoles, item: str, clock: FrozenClock
) -> None:
    ctx, login = make_ctx(), roles.login()
    grant_of(ctx, login, "orders-admin", minutes=10)
    second = grant_of(ctx, login, "orders-admin-too", minutes=60)
    drain(ctx, clock)
    assert roles.memberships(login) == [(item, roles.env.admin, False)]
    session = roles.connect(login)

    clock.advance(timedelta(minutes=10))
    expire_due(ctx)
    drain(ctx, clock)
    assert roles.memberships(login) == [(item, roles.env.admin, False)]
    assert reads_orders(session)
    (kept,) = events(ctx, "credential.revoked")
    assert kept["outcome"]["items"] == {item: f"kept: still held under grant {second}"}

    clock.advance(timedelta(minutes=50))
    expire_due(ctx)
    drain(ctx, clock)
    assert roles.memberships(login) == []
    assert ended(session)


def test_a_membership_held_before_the_grant_survives_it(
    make_ctx: Callable[..., WorkflowContext], roles: PgRoles, item: str, clock: FrozenClock
) -> None:
    ctx, login = make_ctx(), roles.login()
    roles.grant(item, login)
    grant_of(ctx, login)
    drain(ctx, clock)
    (issued,) = events(ctx, "credential.issued")
    assert issued["elevation"]["already_held"] == [item]
    session = roles.connect(login)

    clock.advance(timedelta(minutes=10))
    expire_due(ctx)
    drain(ctx, clock)
    assert roles.memberships(login) == [(item, "postgres", False)]
    assert reads_orders(session)
    (revoked,) = events(ctx, "credential.revoked")
    assert revoked["outcome"]["items"] == {item: "kept: held before the grant"}
