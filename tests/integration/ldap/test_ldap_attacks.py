"""An identity name crafted to be elevated as another directory entry, against a real slapd: case,
filter and DN syntax; each finds no entry, or only its own. (A NUL or other control character never
reaches here: identity names and policy accounts cannot hold one.)"""

from __future__ import annotations

import pytest

from jitgate.policy.loader import parse_policy
from jitgate.policy.model import Target
from jitgate.providers.ldap import LdapProvider
from support.slapd import Slapd, Tree, target_yaml

pytestmark = pytest.mark.slapd

ROLE = """
roles:
  - name: join
    targets: {names: [corp]}
    ldap: {groups: ["cn=any,dc=example,dc=org"]}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
"""


def target_of(slapd: Slapd, tree: Tree, user_search: str | None = None) -> Target:
    target = parse_policy("targets:\n" + target_yaml(slapd, tree, user_search=user_search) + ROLE).target(
        "corp"
    )
    assert target is not None
    return target


def searching(slapd: Slapd, tree: Tree, assertion: str = "(uid={user})") -> Target:
    return target_of(
        slapd, tree, f'{{base: "{tree.base}", filter: "(&(objectClass=inetOrgPerson){assertion})"}}'
    )


def test_a_name_differing_only_in_case_is_not_elevated_as_that_entry(
    provider: LdapProvider, slapd: Slapd, tree: Tree
) -> None:
    """Identity names are case-sensitive (``Bob`` and ``bob`` are two people); uid matching is not."""
    bob = tree.add_person("bob", mail="bob@example.org")
    for target in (target_of(slapd, tree), searching(slapd, tree), searching(slapd, tree, "(mail={user})")):
        assert provider.find_account(target, "Bob") is None
        assert provider.find_account(target, "BOB@example.org") is None
    assert provider.find_account(target_of(slapd, tree), "bob") == bob
    assert provider.find_account(searching(slapd, tree), "bob") == bob
    assert provider.find_account(searching(slapd, tree, "(mail={user})"), "bob@example.org") == bob


def test_filter_syntax_in_a_name_is_only_text(provider: LdapProvider, slapd: Slapd, tree: Tree) -> None:
    tree.add_person("admin")
    target = searching(slapd, tree)
    for name in ("*", "adm*", "admin)(uid=*", "*)(|(uid=*", "admin\\2a", "admin)"):
        assert provider.find_account(target, name) is None, name


def test_dn_syntax_in_a_name_never_reaches_another_entry(
    provider: LdapProvider, slapd: Slapd, tree: Tree
) -> None:
    tree.add_person("admin")
    target = target_of(slapd, tree)
    for name in ("admin,ou=people", "admin+cn=admin", " admin", "admin ", "admin\\", "#61dmin"):
        assert provider.find_account(target, name) is None, repr(name)
