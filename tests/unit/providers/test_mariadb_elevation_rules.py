"""What the MariaDB provider decides without a server when it elevates existing accounts: how the
policy's account string reads, which ``existing_login`` templates it refuses at policy load, and
which roles it will not hand out judged by the grants the server lists for them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitgate.errors import ElevationRefused
from jitgate.policy.model import MariadbAccess, Role, Target, TargetSelector
from jitgate.providers.mariadb import MariadbProvider
from jitgate.providers.mariadb_accounts import Account, mapping_problems, parse_account
from jitgate.providers.mariadb_safety import role_grants_problem

TARGET = Target(name="shop-db", kind="mariadb", admin_dsn_env="SHOP_DSN")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice", Account("alice", "%")),
        ("alice@10.%", Account("alice", "10.%")),
        ("alice@DB.Example.org", Account("alice", "db.example.org")),
        ("alice@10.0.0.0/255.0.0.0", Account("alice", "10.0.0.0/255.0.0.0")),
        ("a@b@10.%", Account("a@b", "10.%")),  # split at the last @
        ("alice@example.com", Account("alice", "example.com")),
        ("'alice@example.com'@'%'", Account("alice@example.com", "%")),
        ("'alice'@'localhost'", Account("alice", "localhost")),
    ],
)
def test_an_account_is_name_or_name_at_host_or_quoted(text: str, expected: Account) -> None:
    assert parse_account(text, "shop-db") == expected


def test_an_account_prints_as_mariadb_does() -> None:
    assert str(Account("alice", "10.%")) == "'alice'@'10.%'"
    assert parse_account(str(Account("a@b", "%")), "shop-db") == Account("a@b", "%")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "anonymous account"),
        ("@%", "anonymous account"),
        ("''@'%'", "anonymous account"),
        ("alice@", "the host must be"),
        ("alice@10.0.0.1; DROP USER root", "the host must be"),
        ("o'brien", "without quotes"),
        ("back\\slash", "without quotes"),
        ("tab\there", "control characters"),
        ("x" * 129, "1 to 128 characters"),
    ],
)
def test_a_string_that_names_no_account_is_refused_for_good(text: str, problem: str) -> None:
    with pytest.raises(ElevationRefused) as refused:
        parse_account(text, "shop-db")
    assert refused.value.message.startswith("mariadb target shop-db: ")
    assert problem in refused.value.message


@pytest.mark.parametrize(
    ("mapping", "problem"),
    [
        ("{user}", None),
        ("{user}@10.%", None),
        ("'{user}'@'%'", None),
        ("ops_{user}@localhost", None),
        ({"alice": "alice_dba@10.%", "bob": "'bob'@'%'"}, None),
        ("{user}@{user}", "may stand in the user name only"),
        ("'{user}'@'{user}.example.org'", "may stand in the user name only"),
        ("{user}@", "the host must be"),
        ("@{user}", "may stand in the user name only"),
        ("'{user}'@'%", "without quotes"),  # half-quoted: the name would hold quotes
        ({"alice": "alice@"}, "account map entry 'alice': 'alice@': the host must be"),
    ],
)
def test_existing_login_templates_are_checked_when_the_policy_is_loaded(
    mapping: str | dict[str, str], problem: str | None
) -> None:
    problems = mapping_problems(mapping)
    if problem is None:
        assert problems == []
    else:
        (line,) = problems
        assert problem in line


def test_validate_names_the_role_for_a_bad_template() -> None:
    role = Role(
        name="dba",
        targets=TargetSelector(names=("shop-db",)),
        mariadb=MariadbAccess(roles=("shop_admin",), existing_login="{user}@{user}"),
        max_duration=timedelta(hours=1),
        requesters=("group:dbas",),
        approval="auto",
    )
    target = Target(
        name="shop-db", kind="mariadb", admin_dsn_env="SHOP_DSN", options={"set_default_role": "yes"}
    )
    assert MariadbProvider({}).validate(role, target) == [
        "mariadb target shop-db: set_default_role must be true or false",
        "role dba: mariadb.existing_login '{user}@{user}': {user} may stand in the user name only, never in"
        " the host",
    ]


SAFE = [
    "GRANT USAGE ON *.* TO `r`",
    "GRANT SELECT, INSERT ON `shop`.* TO `r`",
    "GRANT SELECT (`id`, `item`), UPDATE (`item`) ON `shop`.`orders` TO `r`",
    "GRANT EXECUTE ON PROCEDURE `shop`.`refund` TO `r`",
    "GRANT `inner` TO `r`",
    "GRANT USAGE ON *.* TO `inner`",
    "GRANT SELECT ON `shop\\_archive`.* TO `inner`",
    "GRANT SELECT ON `my``odd`.* TO `inner`",
]


def test_a_role_with_object_privileges_and_plain_roles_may_be_handed_out() -> None:
    assert role_grants_problem("r", SAFE) is None


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("GRANT SELECT ON *.* TO `r`", "it holds global privileges (SELECT ON *.*)"),
        ("GRANT RELOAD, SET USER ON *.* TO `inner`", "through role inner it holds global privileges"),
        ("GRANT USAGE ON *.* TO `r` WITH GRANT OPTION", "it holds GRANT OPTION (USAGE ON *.*)"),
        ("GRANT SELECT ON `shop`.* TO `inner` WITH GRANT OPTION", "through role inner it holds GRANT OPTION"),
        ("GRANT `inner` TO `r` WITH ADMIN OPTION", "it holds role inner WITH ADMIN OPTION"),
        ("GRANT `deeper` TO `inner` WITH ADMIN OPTION", "through role inner it holds role deeper WITH"),
        ("GRANT SELECT ON `mysql`.`global_priv` TO `r`", "system schema mysql"),
        ("GRANT SELECT ON `MySQL`.* TO `r`", "system schema mysql"),
        ("GRANT SELECT ON `%`.* TO `r`", "system schema information_schema"),
        ("GRANT SELECT ON `my_ql`.* TO `r`", "system schema mysql"),  # _ matches any one character
        ("GRANT SELECT ON `s%`.* TO `r`", "system schema sys"),
        ("GRANT EXECUTE ON PROCEDURE `sys`.`ps_setup_enable_thread` TO `r`", "system schema sys"),
        ("GRANT PROXY ON ''@'%' TO `r`", "holds a grant jitgate does not hand out"),
        ("REVOKE ALL", "holds a grant jitgate does not hand out"),
    ],
)
def test_a_role_that_reaches_too_far_is_refused(line: str, problem: str) -> None:
    found = role_grants_problem("r", [*SAFE, line])
    assert found is not None
    assert problem in found
