"""What an identity or an elevated MariaDB account might try, against the real server: an identity
name that spells another account, a role that hides a grant option, and handing the role on during
the window."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from dbkit import MARIADB_HOST, MARIADB_PORT, mariadb_root, provider_context, unreachable

from jitgate.errors import ElevationRefused
from jitgate.policy.elevation import elevation_of
from jitgate.policy.loader import parse_policy
from jitgate.policy.model import Target
from jitgate.providers.mariadb import MariadbProvider

pytestmark = pytest.mark.mariadb
ENV = "JG_TEST_MARIADB_ATTACK_DSN"
TARGET = Target(name="shop-db", kind="mariadb", admin_dsn_env=ENV, options={})
POLICY = f"""
targets:
  - {{name: shop-db, kind: mariadb, admin_dsn_env: {ENV}}}
roles:
  - name: shop-reader
    targets: {{names: [shop-db]}}
    mariadb: {{roles: [reader], existing_login: "{{user}}"}}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
"""


def root(statement: str, args: tuple[str, ...] = ()) -> list[tuple[object, ...]]:
    with mariadb_root() as conn, conn.cursor() as cur:
        cur.execute(statement, args or None)
        return list(cur.fetchall())


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Accounts ('user'@'host') and roles the test makes, dropped afterwards."""
    try:
        root("SELECT 1")
    except pymysql.MySQLError as exc:
        unreachable(f"MariaDB at {MARIADB_HOST}:{MARIADB_PORT}", exc)
    made: list[str] = []
    yield made
    for name in reversed(made):
        root(f"DROP {'USER' if '@' in name else 'ROLE'} IF EXISTS {name}")


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[MariadbProvider]:
    made = MariadbProvider(
        provider_context(tmp_path, {ENV: f"mysql://root:@{MARIADB_HOST}:{MARIADB_PORT}/"}).environ
    )
    yield made
    made.close()


def account(names: list[str], user: str, host: str = "%") -> str:
    root("CREATE USER %s@%s IDENTIFIED BY 'own-password'", (user, host))
    names.append(f"'{user}'@'{host}'")
    return f"'{user}'@'{host}'"


def role(names: list[str], *grants: str) -> str:
    name = f"jg_atk_{secrets.token_hex(4)}"
    root(f"CREATE ROLE `{name}`")
    names.append(f"`{name}`")
    for grant in grants:
        root(grant.format(role=f"`{name}`"))
    return name


def test_an_identity_whose_name_holds_an_at_sign_is_never_elevated_as_another_host_s_account(
    names: list[str], provider: MariadbProvider
) -> None:
    victim = f"jg_victim_{secrets.token_hex(4)}"
    account(names, victim, "localhost")
    elevation = elevation_of(parse_policy(POLICY).roles[0], parse_policy(POLICY).targets[0])
    assert elevation is not None

    mapped = elevation.account_of(f"{victim}@localhost")

    assert mapped == f"'{victim}@localhost'@'%'"
    assert provider.find_account(TARGET, mapped) is None  # refused up front: no such account


def test_a_template_with_its_own_host_keeps_it_whatever_the_identity_holds() -> None:
    policy = parse_policy(POLICY.replace('"{user}"', '"{user}@10.%"'))
    elevation = elevation_of(policy.roles[0], policy.targets[0])
    assert elevation is not None
    assert elevation.account_of("bob@localhost") == "'bob@localhost'@'10.%'"
    assert elevation.account_of("bob") == "'bob'@'10.%'"


def test_a_grant_option_nested_two_roles_deep_is_refused(names: list[str], provider: MariadbProvider) -> None:
    deep = role(names, "GRANT SELECT ON mysql.* TO {role} WITH GRANT OPTION")
    middle = role(names, f"GRANT `{deep}` TO {{role}}")
    item = role(names, f"GRANT `{middle}` TO {{role}}")
    user = account(names, f"jg_dev_{secrets.token_hex(4)}")

    with pytest.raises(ElevationRefused, match=r"GRANT OPTION|system schema"):
        provider.elevate(TARGET, user, (item,))
    assert root("SELECT Role FROM mysql.roles_mapping WHERE User = %s", (user.split("'")[1],)) == []


def test_the_elevated_account_cannot_hand_the_role_on_and_a_default_it_set_itself_is_reported(
    names: list[str], provider: MariadbProvider
) -> None:
    item = role(names, "GRANT SELECT ON jg_atk_shop.* TO {role}")
    user_name = f"jg_dev_{secrets.token_hex(4)}"
    user, accomplice = account(names, user_name), account(names, f"jg_acc_{secrets.token_hex(4)}")
    provider.elevate(TARGET, user, (item,))
    with (
        pymysql.connect(
            host=MARIADB_HOST, port=MARIADB_PORT, user=user_name, password="own-password", autocommit=True
        ) as session,
        session.cursor() as cur,
    ):
        cur.execute(f"SET ROLE `{item}`")
        with pytest.raises(pymysql.MySQLError):
            cur.execute(f"GRANT `{item}` TO {accomplice}")
        # Its own default role: allowed; it names a revoked role afterwards and grants nothing.
        cur.execute(f"SET DEFAULT ROLE `{item}`")

        outcome = provider.withdraw(TARGET, user, (item,))

    assert outcome["sessions_ended"] == 1
    assert root("SELECT User FROM mysql.roles_mapping WHERE Role = %s AND User <> 'root'", (item,)) == []
    assert outcome["default_role_left"] == item
