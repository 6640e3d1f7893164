"""Group DNs in a policy get one spelling, so that the broker counts one group as one item."""

from __future__ import annotations

import pytest

from jitgate.errors import PolicyFileError
from jitgate.policy.dn import canonical_dn
from jitgate.policy.loader import parse_policy

POLICY = """
targets:
  - name: corp
    kind: ldap
    url: ldaps://directory.example.org
    bind_dn: cn=jitgate,ou=services,dc=example,dc=org
    bind_password_env: CORP_LDAP_BIND_PASSWORD
    user_dn: "uid={{user}},ou=people,dc=example,dc=org"
roles:
  - name: admins
    targets: {{names: [corp]}}
    ldap: {{groups: {groups}}}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
"""


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("CN=Prod Admins, OU=Groups,DC=Example,DC=org", "cn=prod admins,ou=groups,dc=example,dc=org"),
        ("cn=a\\2Cb,dc=x", "cn=a\\,b,dc=x"),
        ("cn=a\\,b,dc=x", "cn=a\\,b,dc=x"),
        ("sn=B+cn=A,dc=x", "cn=a+sn=b,dc=x"),
        ("  cn=x,dc=y  ", "cn=x,dc=y"),
    ],
)
def test_spellings_of_one_dn_become_one(written: str, canonical: str) -> None:
    assert canonical_dn(written) == canonical


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("cn=x,,dc=y", "is not a DN"),
        ("prod-admins", "is not a DN"),
        ("cn=,dc=x", "empty attribute type or value"),
        ("cn=#04024869,dc=x", "not as hex-encoded BER"),
    ],
)
def test_what_is_not_a_dn_is_refused(written: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        canonical_dn(written)


def test_a_role_keeps_its_groups_in_the_canonical_spelling() -> None:
    policy = parse_policy(POLICY.format(groups='["CN=Prod-Admins, OU=Groups,DC=example,DC=org"]'))
    role = policy.role("admins")
    assert role is not None
    assert role.ldap is not None
    assert role.ldap.groups == ("cn=prod-admins,ou=groups,dc=example,dc=org",)


def test_one_group_named_twice_in_two_spellings_is_refused() -> None:
    groups = '["cn=ops,dc=example,dc=org", "CN=Ops, DC=Example, DC=Org"]'
    with pytest.raises(PolicyFileError, match="a group is named twice"):
        parse_policy(POLICY.format(groups=groups))
