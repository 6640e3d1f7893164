"""Policy-load validation by the providers: what a role asks of a database is judged before anyone
requests it, without a server or a secret (``validate_policy`` and the providers' ``validate``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jitgate.domain.identity import Identity
from jitgate.domain.model import Grant, RequestState
from jitgate.errors import ElevationRefused, ProviderError
from jitgate.policy.loader import parse_policy
from jitgate.policy.model import PostgresAccess, Role, Target, TargetSelector
from jitgate.providers.base import CredentialProvider, Health, Issued, IssueRequest
from jitgate.providers.mariadb import MariadbProvider
from jitgate.providers.postgres import PostgresProvider
from jitgate.providers.registry import PolicyValidator, validate_policy

POLICY = """
targets:
  - name: orders-db
    kind: postgres
    admin_dsn_env: ORDERS_DB_ADMIN_DSN
    labels: {env: prod}
  - name: billing-db
    kind: postgres
    admin_dsn_env: BILLING_DB_ADMIN_DSN
    labels: {env: prod}
    options: {reasign_to: app_owner, databases: [billing, "bad name"], admin_connections: 0}
  - name: shop-db
    kind: mariadb
    admin_dsn_env: SHOP_DB_ADMIN_DSN
    options: {user_host: "10.0.%", connect_timeout: 10}
roles:
  - name: orders-read
    targets: {names: [orders-db]}
    postgres: {member_of: [readonly, analytics_ro]}
    max_duration: 30m
    requesters: [group:analysts]
    approval: auto
  - name: prod-db
    targets: {labels: {env: prod}}
    postgres: {member_of: [Read Only, "ro\\"; DROP ROLE postgres; --", public, pg_write_server_files]}
    max_duration: 30m
    requesters: [group:analysts]
    approval: auto
  - name: billing-write
    targets: {names: [billing-db]}
    postgres: {member_of: [billing_rw]}
    max_duration: 30m
    requesters: [group:analysts]
    approval: auto
  - name: shop-read
    targets: {names: [shop-db]}
    mariadb:
      roles: [shop_ro, "shop ro"]
      privileges:
        - SELECT ON shop.*
        - select, show view ON shop.orders
        - SELECT ON *.*
        - ALL PRIVILEGES ON shop.*
        - SELECT ON mysql.user
        - SELECT shop.orders
    max_duration: 30m
    requesters: [group:analysts]
    approval: auto
"""

BUILTINS: dict[str, CredentialProvider] = {
    "postgres": PostgresProvider({}),
    "mariadb": MariadbProvider({}),
}


def test_a_clean_database_policy_has_no_problems() -> None:
    clean = parse_policy(
        """
targets:
  - {name: orders-db, kind: postgres, admin_dsn_env: ORDERS_DSN, options: {reassign_to: app_owner}}
  - {name: shop-db, kind: mariadb, admin_dsn_env: SHOP_DSN}
roles:
  - name: orders-read
    targets: {names: [orders-db]}
    postgres: {member_of: [readonly, analytics_ro]}
    max_duration: 30m
    requesters: [group:analysts]
    approval: auto
  - name: shop-read
    targets: {names: [shop-db]}
    mariadb: {roles: [shop_ro], privileges: ["SELECT, SHOW VIEW ON shop.orders", "SELECT ON shop.*"]}
    max_duration: 30m
    requesters: [group:analysts]
    approval: auto
"""
    )
    assert validate_policy(clean, BUILTINS) == []


def test_every_problem_is_one_line_naming_role_target_and_what_is_wrong() -> None:
    problems = validate_policy(parse_policy(POLICY), BUILTINS)
    assert problems == [
        "role prod-db: postgres.member_of role name 'Read Only' for target orders-db would need quoting;"
        " use lowercase letters, digits and _",
        "role prod-db: postgres.member_of role name 'ro\"; DROP ROLE postgres; --' for target orders-db"
        " would need quoting; use lowercase letters, digits and _",
        "role prod-db: postgres.member_of role name 'public' for target orders-db is reserved by PostgreSQL",
        "role prod-db: postgres.member_of role pg_write_server_files on target orders-db gives access to the"
        " server's files or programs",
        "postgres target billing-db: unknown option(s) reasign_to",
        "postgres target billing-db: databases must be a list of database names",
        "postgres target billing-db: admin_connections must be 1 to 32",
        "role prod-db: postgres.member_of role name 'Read Only' for target billing-db would need quoting;"
        " use lowercase letters, digits and _",
        "role prod-db: postgres.member_of role name 'ro\"; DROP ROLE postgres; --' for target billing-db"
        " would need quoting; use lowercase letters, digits and _",
        "role prod-db: postgres.member_of role name 'public' for target billing-db is reserved by PostgreSQL",
        "role prod-db: postgres.member_of role pg_write_server_files on target billing-db gives access to"
        " the server's files or programs",
        "role shop-read: mariadb.roles role name 'shop ro' for target shop-db would need quoting; use"
        " letters, digits and _",
        "role shop-read: mariadb.privileges privilege spec 'SELECT ON *.*' is not allowed: write"
        " PRIVILEGE[, PRIVILEGE] ON database.* or ON database.table",
        "role shop-read: mariadb.privileges privilege spec 'ALL PRIVILEGES ON shop.*': ALL PRIVILEGES may"
        " not be handed out",
        "role shop-read: mariadb.privileges privilege spec 'SELECT ON mysql.user': system schema mysql is"
        " off limits",
        "role shop-read: mariadb.privileges privilege spec 'SELECT shop.orders' is not allowed: write"
        " PRIVILEGE[, PRIVILEGE] ON database.* or ON database.table",
    ]
    assert all("\n" not in line for line in problems)


def test_target_option_problems_are_reported_once_however_many_roles_reach_the_target() -> None:
    problems = validate_policy(parse_policy(POLICY), BUILTINS)
    assert problems.count("postgres target billing-db: unknown option(s) reasign_to") == 1


def test_validation_needs_no_admin_dsn_and_no_server() -> None:
    # No environment at all, and nothing listens: validation reads only the policy.
    providers: dict[str, CredentialProvider] = {
        "postgres": PostgresProvider({"ORDERS_DB_ADMIN_DSN": "postgresql://x:y@127.0.0.1:1/none"}),
        "mariadb": MariadbProvider({}),
    }
    assert len(validate_policy(parse_policy(POLICY), providers)) == 16


@pytest.mark.parametrize(
    ("member_of", "expected"),
    [
        ("Read Only", "would need quoting"),
        ("public", "is reserved by PostgreSQL"),
        ("pg_execute_server_program", "gives access to the server's files or programs"),
    ],
)
def test_issue_refuses_what_validation_reports_before_touching_the_server(
    member_of: str, expected: str
) -> None:
    # The same rules guard issue, for a policy that was never validated; no DSN is even set.
    role = Role(
        name="orders-read",
        targets=TargetSelector(names=("orders-db",)),
        postgres=PostgresAccess(member_of=("readonly", member_of)),
        max_duration=timedelta(hours=1),
        requesters=("group:analysts",),
        approval="auto",
    )
    target = Target(name="orders-db", kind="postgres", admin_dsn_env="ORDERS_DB_ADMIN_DSN")
    now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    grant = Grant(
        id="g-1",
        request_id="r-1",
        holder="alice",
        role=role.name,
        targets=(target.name,),
        starts_at=now,
        expires_at=now + timedelta(minutes=30),
        state=RequestState.ACTIVE,
    )
    request = IssueRequest(grant=grant, role=role, target=target, identity=Identity(name="alice"), now=now)
    provider = PostgresProvider({})
    with pytest.raises(ProviderError, match=expected):
        provider.issue(request, provider.new_handle(request))
    assert any(expected in line for line in provider.validate(role, target))


LONG = "x" * 64
ELEVATING = f"""
targets:
  - {{name: orders-db, kind: postgres, admin_dsn_env: ORDERS_DSN}}
roles:
  - name: own-login
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [orders_admin], existing_login: "{{user}}"}}
    max_duration: 1h
    requesters: [group:dbas]
    approval: auto
  - name: suffixed
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [orders_admin], existing_login: "{{user}}_dba"}}
    max_duration: 1h
    requesters: [group:dbas]
    approval: auto
  - name: prefixed
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [orders_admin], existing_login: "pg_{{user}}"}}
    max_duration: 1h
    requesters: [group:dbas]
    approval: auto
  - name: too-long
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [Orders Admin], existing_login: "{LONG[:63]}{{user}}"}}
    max_duration: 1h
    requesters: [group:dbas]
    approval: auto
  - name: mapped
    targets: {{names: [orders-db]}}
    postgres:
      member_of: [orders_admin]
      existing_login: {{alice: alice_dba, bob: public, carol: jit_carol_0123456789ab, dave: {LONG}}}
    max_duration: 1h
    requesters: [group:dbas]
    approval: auto
"""


def test_existing_logins_that_cannot_name_a_postgresql_role_are_reported() -> None:
    problems = validate_policy(parse_policy(ELEVATING), BUILTINS)
    assert problems == [
        "role prefixed: postgres.existing_login 'pg_{user}': names starting with pg_ are reserved by"
        " PostgreSQL",
        "role too-long: postgres.member_of role name 'Orders Admin' for target orders-db would need quoting;"
        " use lowercase letters, digits and _",
        f"role too-long: postgres.existing_login '{LONG[:63]}{{user}}' leaves no room for a name in"
        " PostgreSQL's 63 bytes",
        "role mapped: postgres.existing_login 'public' is reserved by PostgreSQL",
        "role mapped: postgres.existing_login 'jit_carol_0123456789ab' is a login jitgate creates for a grant"
        " on target orders-db, not an existing one",
        f"role mapped: postgres.existing_login '{LONG}' is longer than PostgreSQL's 63-byte role names",
    ]


def test_elevation_refuses_what_validation_reports_before_touching_the_server() -> None:
    target = Target(name="orders-db", kind="postgres", admin_dsn_env="ORDERS_DB_ADMIN_DSN")
    provider = PostgresProvider({})  # no DSN: a refusal that needed the server would say so instead
    with pytest.raises(ElevationRefused, match="would need quoting"):
        provider.elevate(target, "alice", ("orders_admin", "Orders Admin"))
    with pytest.raises(ElevationRefused, match="is one jitgate creates for a grant"):
        provider.elevate(target, "jit_alice_0123456789ab", ("orders_admin",))


class Plugin:
    """A third-party provider; ``mode`` picks how its validate hook behaves."""

    kind = "vaultish"
    revocable = False

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.seen: list[tuple[str, str]] = []

    def new_handle(self, request: IssueRequest) -> str:
        return "h"

    def issue(self, request: IssueRequest, handle: str) -> Issued:
        raise NotImplementedError

    def revoke(self, target: Target, handle: str) -> None:
        return None

    def check(self, target: Target) -> Health:
        return Health(ok=True, detail="fine")


class Validating(Plugin):
    def validate(self, role: Role, target: Target) -> list[str]:
        self.seen.append((role.name, target.name))
        if self.mode == "raise":
            raise RuntimeError("vault path template broken\nsecond line")
        if self.mode == "junk":
            return ["  spread\n over   lines ", ""]
        return [f"target {target.name}: role {role.name} asks for a path outside the mount"]


PLUGIN_POLICY = """
targets:
  - {name: vault-1, kind: vaultish, labels: {env: prod}}
  - {name: vault-2, kind: vaultish, labels: {env: prod}}
  - {name: legacy-1, kind: oracle}
roles:
  - name: secrets-read
    targets: {labels: {env: prod}}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
  - name: legacy
    targets: {names: [legacy-1]}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
"""


def check(provider: Any) -> list[str]:
    return validate_policy(parse_policy(PLUGIN_POLICY), {"vaultish": provider})


def test_a_third_party_hook_is_asked_about_each_role_and_target_it_serves() -> None:
    plugin = Validating("lines")
    assert isinstance(plugin, PolicyValidator)
    assert check(plugin) == [
        "target vault-1: role secrets-read asks for a path outside the mount",
        "target vault-2: role secrets-read asks for a path outside the mount",
    ]
    assert plugin.seen == [("secrets-read", "vault-1"), ("secrets-read", "vault-2")]


def test_providers_without_the_hook_and_kinds_without_a_provider_are_skipped() -> None:
    plain = Plugin("none")
    assert not isinstance(plain, PolicyValidator)
    assert check(plain) == []


def test_a_hook_that_raises_is_a_problem_not_a_pass() -> None:
    assert check(Validating("raise")) == [
        "role secrets-read, target vault-1: the vaultish provider failed to check it: RuntimeError: vault"
        " path template broken",
        "role secrets-read, target vault-2: the vaultish provider failed to check it: RuntimeError: vault"
        " path template broken",
    ]


def test_lines_are_kept_to_one_line_and_empty_ones_dropped() -> None:
    assert check(Validating("junk")) == ["spread over lines"]
