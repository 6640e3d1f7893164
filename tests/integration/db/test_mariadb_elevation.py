"""Elevating an existing MariaDB account with a MariaDB role, against the real server and through the
broker's workflow: the account reads what only the role may read during the window and not after,
every session that had the role ends with it, a role held before the grant stays, two grants of one
role do not end each other, a target down at expiry is retried, and unsafe roles and accounts jitgate
does not elevate are refused.

The admin here has no ``CREATE USER``: elevation needs only ``CONNECTION ADMIN``, each role ``WITH
ADMIN OPTION`` and reads of the ``mysql`` tables that hold no password hash. A second admin also
holds ``UPDATE`` on ``mysql.*``, for the ``set_default_role`` option.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeAlias

import pymysql
import pytest
import sqlalchemy as sa
from dbkit import (
    MARIADB_HOST,
    MARIADB_PORT,
    MariadbEnv,
    TcpProxy,
    mariadb_root,
    provider_context,
    unreachable,
)

from jitgate.api.problems import status_of
from jitgate.audit.chain import AuditLog
from jitgate.audit.query import query as audit_query
from jitgate.clock import FrozenClock
from jitgate.domain.identity import Identity
from jitgate.errors import ElevationRefused, PolicyDenied, ProviderError
from jitgate.policy.loader import parse_policy
from jitgate.policy.model import Target
from jitgate.providers.mariadb import MariadbProvider
from jitgate.store import issuance, tables
from jitgate.store import queries as q
from jitgate.store.db import Database
from jitgate.store.migrate import upgrade
from jitgate.workflow import requests as svc
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from jitgate.workflow.scheduler import expire_due, run_revocations

pytestmark = pytest.mark.mariadb

Conn: TypeAlias = "pymysql.connections.Connection[pymysql.cursors.Cursor]"
ENV = "JG_TEST_MARIADB_ELEVATION_DSN"
ACCESS_DENIED = {1142, 1044}
INVALID_ROLE = 1959
READS = (
    "GRANT SELECT (User, Host, is_role, default_role, Super_priv, Grant_priv) ON mysql.user TO {0}",
    "GRANT SELECT ON mysql.roles_mapping TO {0}",
    "GRANT SELECT ON mysql.db TO {0}",
    "GRANT SELECT ON mysql.tables_priv TO {0}",
    "GRANT SELECT ON mysql.procs_priv TO {0}",
)


@dataclass(frozen=True)
class Server:
    """A database with a table only roles may read, and the two admins."""

    database: str
    admin: str
    admin_dr: str
    password: str

    def dsn(self, *, default_roles: bool = False, port: int = MARIADB_PORT) -> str:
        admin = self.admin_dr if default_roles else self.admin
        return f"mysql://{admin}:{self.password}@{MARIADB_HOST}:{port}/"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    try:
        root = mariadb_root()
    except pymysql.MySQLError as exc:
        unreachable(f"MariaDB at {MARIADB_HOST}:{MARIADB_PORT}", exc)
    suffix = secrets.token_hex(4)
    made = Server(f"jg_el_{suffix}", f"jg_eladm_{suffix}", f"jg_eladr_{suffix}", secrets.token_urlsafe(12))
    with root, root.cursor() as cur:
        try:
            cur.execute(f"CREATE DATABASE `{made.database}`")
            cur.execute(f"CREATE TABLE `{made.database}`.vault (secret text)")
            cur.execute(f"INSERT INTO `{made.database}`.vault VALUES ('the recipe')")  # noqa: S608 - generated name
            for admin in (made.admin, made.admin_dr):
                cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (admin, made.password))
                cur.execute(f"GRANT CONNECTION ADMIN ON *.* TO `{admin}`@'%'")
                for statement in READS:
                    cur.execute(statement.format(f"`{admin}`@'%'"))
            cur.execute(f"GRANT UPDATE ON mysql.* TO `{made.admin_dr}`@'%'")
            yield made
        finally:
            cur.execute(f"DROP DATABASE IF EXISTS `{made.database}`")
            for admin in (made.admin, made.admin_dr):
                cur.execute("DROP USER IF EXISTS %s@'%%'", (admin,))


@dataclass
class World:
    """What one test creates on the server (dropped afterwards), and how it looks there."""

    server: Server
    suffix: str = field(default_factory=lambda: secrets.token_hex(4))
    users: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    sessions: list[Conn] = field(default_factory=list)

    def root(self, *statements: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with mariadb_root() as root, root.cursor() as cur:
            for statement in statements:
                cur.execute(statement, args or None)
            return list(cur.fetchall())

    def role(self, name: str = "reader", *grants: str) -> str:
        """A role that may read the vault (or holds ``grants``), which both admins may hand out."""
        role = f"jg_{name}_{self.suffix}"
        self.roles.append(role)
        self.root(f"CREATE ROLE `{role}`")
        for grant in grants or (f"SELECT ON `{self.server.database}`.vault",):
            what, option, _ = grant.format(db=self.server.database).partition(" WITH GRANT OPTION")
            self.root(f"GRANT {what} TO `{role}`{option}")
        for admin in (self.server.admin, self.server.admin_dr):
            self.root(f"GRANT `{role}` TO `{admin}`@'%' WITH ADMIN OPTION")
        return role

    def account(self, name: str = "dba") -> str:
        user = f"jg_{name}_{self.suffix}"
        self.users.append(user)
        self.root("CREATE USER %s@'%%' IDENTIFIED BY 'own-password'", args=(user,))
        return user

    def session(self, user: str) -> Conn:
        conn = pymysql.connect(
            host=MARIADB_HOST, port=MARIADB_PORT, user=user, password="own-password", autocommit=True
        )
        self.sessions.append(conn)
        return conn

    def granted(self, user: str) -> set[str]:
        rows = self.root("SELECT Role FROM mysql.roles_mapping WHERE User = %s AND Host = '%%'", args=(user,))
        return {str(row[0]) for row in rows}

    def default_role(self, user: str) -> str:
        rows = self.root("SELECT default_role FROM mysql.user WHERE User = %s AND Host = '%%'", args=(user,))
        return str(rows[0][0])

    def drop(self) -> None:
        for conn in self.sessions:
            conn.close()
        for user in self.users:
            self.root("DROP USER IF EXISTS %s@'%%'", args=(user,))
        for role in self.roles:
            self.root(f"DROP ROLE IF EXISTS `{role}`")


@pytest.fixture
def world(server: Server) -> Iterator[World]:
    made = World(server)
    yield made
    made.drop()


def run(conn: Conn, statement: str) -> tuple[Any, ...]:
    with conn.cursor() as cur:
        cur.execute(statement)
        return tuple(cur.fetchall())


def reads_vault(conn: Conn, world: World) -> bool:
    """True when the session may read the vault, False when it is denied; a dead session raises."""
    try:
        return run(conn, f"SELECT secret FROM `{world.server.database}`.vault") == (("the recipe",),)  # noqa: S608
    except pymysql.err.OperationalError as exc:
        if exc.args[0] in ACCESS_DENIED:
            return False
        raise


def ended(conn: Conn) -> bool:
    try:
        run(conn, "SELECT 1")
    except pymysql.err.OperationalError as exc:
        return exc.args[0] in {2006, 2013}
    return False


def target(**options: Any) -> Target:
    return Target(name="shop-db", kind="mariadb", admin_dsn_env=ENV, options=options)


@pytest.fixture
def make_provider(server: Server, tmp_path: Path) -> Iterator[Callable[..., MariadbProvider]]:
    made: list[MariadbProvider] = []

    def make(*, default_roles: bool = False, dsn: str | None = None) -> MariadbProvider:
        environ = {ENV: dsn or server.dsn(default_roles=default_roles)}
        provider = MariadbProvider(provider_context(tmp_path, environ).environ)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


# --- through the broker's workflow -------------------------------------------------------------


def policy_yaml(roles: dict[str, tuple[str, ...]], *, options: str = "{}", login: str = '"{user}"') -> str:
    lines = [
        "targets:",
        f"  - {{name: shop-db, kind: mariadb, admin_dsn_env: {ENV}, options: {options}}}",
        "roles:",
    ]
    for name, granted in roles.items():
        lines += [
            f"  - name: {name}",
            "    targets: {names: [shop-db]}",
            f"    mariadb: {{roles: [{', '.join(granted)}], existing_login: {login}}}",
            "    max_duration: 4h",
            "    requesters: [group:engineers]",
            "    approval: auto",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class Broker:
    ctx: WorkflowContext
    clock: FrozenClock

    def grant(self, user: str, role: str, *, minutes: int = 30) -> str:
        who = Identity(name=user, groups=frozenset({"engineers"}))
        view = svc.submit(self.ctx, who, role=role, reason="INC-7", duration=f"{minutes}m")
        assert view["state"] == "ACTIVE"
        return str(view["grant"]["id"])

    def drain(self) -> tuple[int, int]:
        """Run the queue until nothing is due (work behind the same account waits a moment)."""
        total = (0, 0)
        for _ in range(10):
            done, failed = run_revocations(self.ctx)
            if not done and not failed:
                return total
            total = (total[0] + done, total[1] + failed)
            self.clock.advance(timedelta(seconds=1))
        return total

    def expire_after(self, minutes: int) -> None:
        self.clock.advance(timedelta(minutes=minutes))
        assert expire_due(self.ctx) >= 1

    def audit(self, action: str) -> list[dict[str, Any]]:
        with self.ctx.db.read() as conn:
            return [dict(event.details) for event in audit_query(conn, action=action)]


@pytest.fixture
def make_broker(
    tmp_path: Path, clock: FrozenClock, audit: AuditLog, make_provider: Callable[..., MariadbProvider]
) -> Iterator[Callable[..., Broker]]:
    databases: list[Database] = []

    def make(policy: str, *, provider: MariadbProvider | None = None) -> Broker:
        database = Database(f"sqlite:///{tmp_path / f'jitgate-{len(databases)}.db'}")
        upgrade(database.engine)
        databases.append(database)
        ctx = WorkflowContext(
            db=database,
            policies=PolicyHolder(parse_policy(policy)),
            audit=audit,
            clock=clock,
            providers={"mariadb": provider or make_provider()},
            revocation_backoff_seconds=1.0,
        )
        return Broker(ctx, clock)

    yield make
    for database in databases:
        database.dispose()


def test_the_account_reads_the_vault_only_during_the_window_and_every_session_loses_it(
    world: World, make_broker: Callable[..., Broker]
) -> None:
    role, user = world.role(), world.account()
    broker = make_broker(policy_yaml({"vault-read": (role,)}))
    before = world.session(user)
    assert not reads_vault(before, world)

    broker.grant(user, "vault-read")
    assert world.granted(user) == set()  # nothing happens inside the request's transaction
    assert broker.drain() == (1, 0)
    assert world.granted(user) == {role}
    (issued,) = broker.audit("credential.issued")
    assert issued["elevation"]["account"] == f"'{user}'@'%'"
    assert issued["elevation"]["needs_set_role"] == [role]
    assert issued["elevation"]["default_role"] == {"before": None, "after": None}
    run(before, f"SET ROLE `{role}`")  # a session older than the grant takes the role up
    assert reads_vault(before, world)
    during = world.session(user)
    assert run(during, "SELECT CURRENT_ROLE()") == ((None,),)  # no default role was set
    assert not reads_vault(during, world)
    run(during, f"SET ROLE `{role}`")
    assert reads_vault(during, world)

    broker.expire_after(30)
    assert broker.drain() == (1, 0)
    assert ended(before)
    assert ended(during)
    assert world.granted(user) == set()
    after = world.session(user)
    with pytest.raises(pymysql.MySQLError) as refused:
        run(after, f"SET ROLE `{role}`")
    assert refused.value.args[0] == INVALID_ROLE
    assert not reads_vault(after, world)
    (revoked,) = broker.audit("credential.revoked")
    assert revoked["outcome"]["items"] == {role: "withdrawn"}
    assert revoked["outcome"]["revoked"] == [role]
    assert revoked["outcome"]["sessions_ended"] == 2


def test_with_set_default_role_a_new_session_has_the_role_and_the_default_is_cleared_at_the_end(
    world: World, make_broker: Callable[..., Broker], make_provider: Callable[..., MariadbProvider]
) -> None:
    role, user = world.role(), world.account()
    policy = policy_yaml({"vault-read": (role,)}, options="{set_default_role: true}")
    broker = make_broker(policy, provider=make_provider(default_roles=True))
    broker.grant(user, "vault-read")
    broker.drain()
    assert world.default_role(user) == role
    (issued,) = broker.audit("credential.issued")
    assert issued["elevation"]["default_role"] == {"before": None, "after": role}
    assert issued["elevation"]["needs_set_role"] == []
    during = world.session(user)
    assert run(during, "SELECT CURRENT_ROLE()") == ((role,),)
    assert reads_vault(during, world)

    broker.expire_after(30)
    broker.drain()
    assert ended(during)
    assert world.default_role(user) == ""
    (revoked,) = broker.audit("credential.revoked")
    assert revoked["outcome"]["default_role_cleared"] == role
    after = world.session(user)
    assert run(after, "SELECT CURRENT_ROLE()") == ((None,),)
    assert not reads_vault(after, world)


def test_an_account_with_a_default_role_of_its_own_keeps_it_and_is_told_to_set_role(
    world: World, make_broker: Callable[..., Broker], make_provider: Callable[..., MariadbProvider]
) -> None:
    own, role, user = world.role("own", "SELECT ON mysql.help_topic"), world.role(), world.account()
    world.root(f"GRANT `{own}` TO %s@'%%'", f"SET DEFAULT ROLE `{own}` FOR %s@'%%'", args=(user,))
    policy = policy_yaml({"vault-read": (role,)}, options="{set_default_role: true}")
    broker = make_broker(policy, provider=make_provider(default_roles=True))
    broker.grant(user, "vault-read")
    broker.drain()
    assert world.default_role(user) == own
    (issued,) = broker.audit("credential.issued")
    assert issued["elevation"]["default_role"] == {"before": own, "after": own}
    assert issued["elevation"]["needs_set_role"] == [role]
    during = world.session(user)
    assert run(during, "SELECT CURRENT_ROLE()") == ((own,),)
    run(during, f"SET ROLE `{role}`")
    assert reads_vault(during, world)

    broker.expire_after(30)
    broker.drain()
    assert world.default_role(user) == own
    assert world.granted(user) == {own}


def test_a_role_the_account_held_before_the_grant_survives_it(
    world: World, make_broker: Callable[..., Broker]
) -> None:
    role, user = world.role(), world.account()
    world.root(f"GRANT `{role}` TO %s@'%%'", args=(user,))
    broker = make_broker(policy_yaml({"vault-read": (role,)}))
    session = world.session(user)
    run(session, f"SET ROLE `{role}`")
    broker.grant(user, "vault-read")
    broker.drain()
    (issued,) = broker.audit("credential.issued")
    assert issued["elevation"]["already_held"] == [role]

    broker.expire_after(30)
    broker.drain()
    assert world.granted(user) == {role}
    assert reads_vault(session, world)  # nothing was taken away, so no session was ended
    (revoked,) = broker.audit("credential.revoked")
    assert revoked["outcome"]["items"] == {role: "kept: held before the grant"}


def test_two_grants_of_the_same_role_do_not_end_each_other(
    world: World, make_broker: Callable[..., Broker]
) -> None:
    role, user = world.role(), world.account()
    broker = make_broker(policy_yaml({"vault-read": (role,), "vault-read-too": (role,)}))
    broker.grant(user, "vault-read", minutes=10)
    broker.grant(user, "vault-read-too", minutes=60)
    broker.drain()
    session = world.session(user)
    run(session, f"SET ROLE `{role}`")

    broker.expire_after(10)
    broker.drain()
    assert world.granted(user) == {role}
    assert reads_vault(session, world)
    broker.expire_after(50)
    broker.drain()
    assert world.granted(user) == set()
    assert ended(session)


def test_the_target_down_at_expiry_then_back_still_ends_with_the_role_revoked(
    world: World,
    server: Server,
    make_broker: Callable[..., Broker],
    make_provider: Callable[..., MariadbProvider],
    tcp_proxy: Callable[[tuple[str, int]], TcpProxy],
) -> None:
    role, user = world.role(), world.account()
    proxy = tcp_proxy((MARIADB_HOST, MARIADB_PORT))
    provider = make_provider(dsn=server.dsn(port=proxy.port))
    broker = make_broker(
        policy_yaml({"vault-read": (role,)}, options="{connect_timeout: 2}"), provider=provider
    )
    grant_id = broker.grant(user, "vault-read", minutes=10)
    broker.drain()
    session = world.session(user)  # straight to the server, not through the proxy
    run(session, f"SET ROLE `{role}`")

    proxy.stop()
    broker.expire_after(10)
    assert run_revocations(broker.ctx) == (0, 1)
    with broker.ctx.db.read() as conn:
        (pending,) = issuance.pending_revocations(conn, [grant_id])
    assert pending["action"] == "withdraw"
    assert "cannot connect" in pending["last_error"]
    assert server.password not in pending["last_error"]
    assert world.granted(user) == {role}
    assert reads_vault(session, world)  # nothing at the server ends it by itself

    proxy.start()
    broker.clock.advance(timedelta(minutes=1))
    assert run_revocations(broker.ctx) == (1, 0)
    assert world.granted(user) == set()
    assert ended(session)
    with broker.ctx.db.read() as conn:
        assert issuance.pending_revocations(conn, [grant_id]) == []


@pytest.mark.parametrize("kind", ["missing", "admin", "superuser", "grant option", "provisioned", "a role"])
def test_an_account_jitgate_does_not_elevate_is_refused_up_front_and_nothing_is_created(
    world: World, server: Server, make_broker: Callable[..., Broker], kind: str
) -> None:
    role = world.role()
    user = {
        "missing": f"jg_nobody_{world.suffix}",
        "admin": server.admin,
        "provisioned": f"jit_el_{secrets.token_hex(6)}",
        "a role": role,
    }.get(kind) or world.account()
    if kind == "provisioned":
        world.users.append(user)
        world.root("CREATE USER %s@'%%'", args=(user,))
    if kind == "superuser":
        world.root("GRANT SUPER ON *.* TO %s@'%%'", args=(user,))
    if kind == "grant option":
        world.root(f"GRANT SELECT ON `{server.database}`.* TO %s@'%%' WITH GRANT OPTION", args=(user,))
    broker = make_broker(policy_yaml({"vault-read": (role,)}))
    with pytest.raises(PolicyDenied) as refused:
        broker.grant(user, "vault-read")
    message = str(refused.value)
    assert status_of(refused.value) == 403
    assert "\n" not in message
    expected = {
        "missing": f"account '{user}'@'%' does not exist on target shop-db",
        "a role": f"account '{user}'@'%' does not exist on target shop-db",
        "admin": "is the admin's own",
        "superuser": "has SUPER",
        "grant option": f"holds GRANT OPTION (on {server.database}.*)",
        "provisioned": "is a login jitgate provisions",
    }[kind]
    assert expected in message
    with broker.ctx.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.requests)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.credentials)).scalar() == 0
    if kind in {"missing", "a role"}:
        assert world.root("SELECT 1 FROM mysql.user WHERE User = %s AND Host = '%%'", args=(user,)) == []
    assert not world.root(
        "SELECT 1 FROM mysql.roles_mapping WHERE Role = %s AND Admin_option = 'N'", args=(role,)
    )


def test_an_unsafe_role_ends_the_grant_and_grants_nothing(
    world: World, make_broker: Callable[..., Broker]
) -> None:
    role, user = world.role("wide", "SELECT ON *.*"), world.account()
    broker = make_broker(policy_yaml({"everything": (role,)}))
    grant_id = broker.grant(user, "everything")
    broker.drain()
    with broker.ctx.db.read() as conn:
        grant = q.get_grant(conn, grant_id)
    assert grant is not None
    assert grant.state.value == "REVOKED"
    (refused,) = broker.audit("elevation.refused")
    assert f"role {role} on target shop-db: it holds global privileges (SELECT ON *.*)" in refused["error"]
    assert world.granted(user) == set()


# --- the provider's methods ---------------------------------------------------------------------


def test_mariadb_lets_a_session_keep_a_revoked_role_which_is_why_withdraw_ends_sessions(world: World) -> None:
    role, user = world.role(), world.account()
    world.root(f"GRANT `{role}` TO %s@'%%'", args=(user,))
    session = world.session(user)
    run(session, f"SET ROLE `{role}`")
    world.root(f"REVOKE `{role}` FROM %s@'%%'", args=(user,))
    assert run(session, "SELECT CURRENT_ROLE()") == ((role,),)
    assert reads_vault(session, world)


@pytest.mark.parametrize(
    ("grants", "nested", "problem"),
    [
        (("SELECT ON *.*",), (), "it holds global privileges (SELECT ON *.*)"),
        (
            ("SELECT ON `{db}`.vault WITH GRANT OPTION",),
            (),
            "it holds GRANT OPTION (SELECT ON `{db}`.`vault`)",
        ),
        (("SELECT ON mysql.global_priv",), (), "privileges in the system schema mysql"),
        (("SELECT ON `%`.*",), (), "privileges in the system schema information_schema"),
        (
            (),
            ("CONNECTION ADMIN ON *.*",),
            "through role {inner} it holds global privileges (CONNECTION ADMIN",
        ),
        ((), ("admin option",), "it holds role {inner} WITH ADMIN OPTION"),
    ],
)
def test_unsafe_roles_are_refused_before_anything_is_granted(
    world: World,
    make_provider: Callable[..., MariadbProvider],
    grants: tuple[str, ...],
    nested: tuple[str, ...],
    problem: str,
) -> None:
    user = world.account()
    role = world.role("unsafe", *(grants or ("SELECT ON `{db}`.vault",)))
    inner = ""
    if nested:
        inner = world.role("inner", *(() if nested == ("admin option",) else nested))
        option = " WITH ADMIN OPTION" if nested == ("admin option",) else ""
        world.root(f"GRANT `{inner}` TO `{role}`{option}")
    provider = make_provider()
    account = provider.find_account(target(), user)
    assert account == f"'{user}'@'%'"
    with pytest.raises(ElevationRefused) as refused:
        provider.elevate(target(), account, (role,))
    assert problem.format(db=world.server.database, inner=inner) in str(refused.value)
    assert str(refused.value).endswith("jitgate will not hand it out")
    assert world.granted(user) == set()


def test_a_role_that_does_not_exist_or_that_the_admin_does_not_hold_is_refused(
    world: World, make_provider: Callable[..., MariadbProvider]
) -> None:
    user, foreign = world.account(), f"jg_foreign_{world.suffix}"
    world.roles.append(foreign)
    world.root(f"CREATE ROLE `{foreign}`")
    provider = make_provider()
    with pytest.raises(
        ElevationRefused, match=f"role jg_none_{world.suffix} does not exist on target shop-db"
    ):
        provider.elevate(target(), user, (f"jg_none_{world.suffix}",))
    with pytest.raises(ElevationRefused, match=f"the admin does not hold role {foreign}"):
        provider.elevate(target(), user, (foreign,))
    assert world.granted(user) == set()


def test_held_counts_only_roles_granted_to_the_account_itself(
    world: World, make_provider: Callable[..., MariadbProvider]
) -> None:
    outer, inner, user = world.role("outer"), world.role("inner"), world.account()
    world.root(f"GRANT `{inner}` TO `{outer}`")
    world.root(f"GRANT `{outer}` TO %s@'%%'", args=(user,))
    provider = make_provider()
    assert provider.held(target(), user, (outer, inner)) == {outer}


def test_elevating_at_once_from_two_threads_grants_the_role_once(
    world: World, make_provider: Callable[..., MariadbProvider]
) -> None:
    role, user = world.role(), world.account()
    provider = make_provider()
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: provider.elevate(target(), f"{user}@%", (role,)), range(2)))
    assert [outcome["needs_set_role"] for outcome in done] == [[role], [role]]
    assert world.granted(user) == {role}
    assert provider.held(target(), f"'{user}'@'%'", (role,)) == {role}


def test_withdraw_is_idempotent_and_ends_the_sessions_of_an_account_that_is_gone(
    world: World, make_provider: Callable[..., MariadbProvider]
) -> None:
    role, user = world.role(), world.account()
    provider = make_provider()
    provider.elevate(target(), user, (role,))
    first = world.session(user)
    run(first, f"SET ROLE `{role}`")
    assert provider.withdraw(target(), user, (role,)) == {
        "revoked": [role],
        "not_held": [],
        "sessions_ended": 1,
    }
    assert ended(first)
    assert provider.withdraw(target(), user, (role,)) == {
        "revoked": [],
        "not_held": [role],
        "sessions_ended": 0,
    }

    provider.elevate(target(), user, (role,))
    second = world.session(user)
    run(second, f"SET ROLE `{role}`")
    world.root("DROP USER %s@'%%'", args=(user,))
    assert reads_vault(second, world)  # a dropped account's session keeps its role
    assert provider.find_account(target(), user) is None
    outcome = provider.withdraw(target(), user, (role,))
    assert outcome == {"revoked": [], "not_held": [role], "sessions_ended": 1}
    assert ended(second)


def test_an_account_with_a_host_is_elevated_there_only(
    world: World, make_provider: Callable[..., MariadbProvider]
) -> None:
    role, user = world.role(), world.account()
    world.root("CREATE USER %s@'10.%%' IDENTIFIED BY 'other'", args=(user,))
    try:
        provider = make_provider()
        assert provider.find_account(target(), f"{user}@10.%") == f"'{user}'@'10.%'"
        assert provider.find_account(target(), f"{user}@10.0.%") is None
        provider.elevate(target(), f"'{user}'@'10.%'", (role,))
        assert world.granted(user) == set()  # the '%' account got nothing
        assert world.root(
            "SELECT Role FROM mysql.roles_mapping WHERE User = %s AND Host = '10.%%'", args=(user,)
        ) == [(role,)]
    finally:
        world.root("DROP USER IF EXISTS %s@'10.%%'", args=(user,))


def test_set_default_role_without_the_privilege_is_refused_in_one_line(
    world: World, make_provider: Callable[..., MariadbProvider]
) -> None:
    role, user = world.role(), world.account()
    provider = make_provider()
    with pytest.raises(ElevationRefused) as refused:
        provider.elevate(target(set_default_role=True), user, (role,))
    assert "the admin may not set default roles (set_default_role needs UPDATE on mysql.*)" in str(
        refused.value
    )
    provider.withdraw(target(set_default_role=True), user, (role,))  # what the broker does next
    assert world.granted(user) == set()


def test_an_admin_that_may_not_read_the_accounts_is_told_what_it_needs(
    world: World, mariadb_env: MariadbEnv
) -> None:
    provider = MariadbProvider({ENV: mariadb_env.admin_dsn()})
    try:
        with pytest.raises(ProviderError) as failure:
            provider.find_account(target(), world.account())
    finally:
        provider.close()
    message = str(failure.value)
    assert "elevating existing accounts needs SELECT on mysql.roles_mapping" in message
    assert mariadb_env.admin_password not in message
    assert "\n" not in message
