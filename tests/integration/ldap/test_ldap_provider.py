"""The ldap provider against a real OpenLDAP slapd: finding entries, joining and leaving each kind
of group, TLS with the server's certificate verified, and errors that say what failed in one line."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from jitgate.clock import FrozenClock
from jitgate.domain.identity import Identity
from jitgate.domain.model import Grant, RequestState
from jitgate.errors import ElevationRefused, ProviderError, TargetUnreachable
from jitgate.policy.dn import canonical_dn
from jitgate.policy.loader import parse_policy
from jitgate.policy.model import Role, Target
from jitgate.providers.base import ElevationProvider, IssueRequest, ProviderContext
from jitgate.providers.ldap import LdapProvider, create_provider
from jitgate.providers.registry import discover
from support.slapd import PASSWORD_ENV, ROOT_DN, Slapd, Tree, make_authority, target_yaml

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


def policy_of(slapd: Slapd, tree: Tree, **options: object) -> tuple[Role, Target]:
    policy = parse_policy("targets:\n" + target_yaml(slapd, tree, **options) + ROLE)  # type: ignore[arg-type]
    role, target = policy.role("join"), policy.target("corp")
    assert role is not None
    assert target is not None
    return role, target


def target_of(slapd: Slapd, tree: Tree, **options: object) -> Target:
    return policy_of(slapd, tree, **options)[1]


def provider_with(environ: dict[str, str], tmp_path: Path, clock: FrozenClock) -> LdapProvider:
    return create_provider(ProviderContext(data_dir=tmp_path, environ=environ, clock=clock))


@pytest.fixture
def target(slapd: Slapd, tree: Tree) -> Target:
    return target_of(slapd, tree)


# Finding the entry.


def test_the_dn_template_finds_an_existing_entry_and_nothing_for_a_missing_one(
    provider: LdapProvider, tree: Tree, target: Target
) -> None:
    alice = tree.add_person("alice")
    assert provider.find_account(target, "alice") == alice
    assert provider.find_account(target, "nobody") is None


def test_a_name_is_escaped_into_the_dn_template_so_it_cannot_point_elsewhere(
    provider: LdapProvider, tree: Tree, target: Target
) -> None:
    tree.add_person("alice")
    # Unescaped, this would be the DN uid=alice,ou=people,<tree>,ou=people,<tree>... or a syntax error.
    assert provider.find_account(target, f"alice,{tree.people}") is None
    odd = tree.add_person("o'neil+x, jr")
    found = provider.find_account(target, "o'neil+x, jr")
    assert found is not None
    assert canonical_dn(found) == canonical_dn(odd)  # the directory writes its escapes its own way


def test_a_user_search_finds_exactly_one_entry_and_refuses_several(
    provider: LdapProvider, slapd: Slapd, tree: Tree
) -> None:
    alice = tree.add_person("alice", mail="alice@example.org")
    tree.add_person("twin-1", mail="twin@example.org")
    tree.add_person("twin-2", mail="twin@example.org")
    search = f'{{base: "{tree.people}", filter: "(&(objectClass=inetOrgPerson)(mail={{user}}@example.org))"}}'
    target = target_of(slapd, tree, user_search=search)
    assert provider.find_account(target, "alice") == alice
    assert provider.find_account(target, "nobody") is None
    assert provider.find_account(target, "*") is None  # the wildcard is escaped, not a wildcard
    with pytest.raises(
        ElevationRefused, match="user_search matches several entries for twin; exactly one must"
    ):
        provider.find_account(target, "twin")


def test_a_user_search_under_a_base_that_does_not_exist_is_an_error_not_a_missing_account(
    provider: LdapProvider, slapd: Slapd, tree: Tree
) -> None:
    target = target_of(slapd, tree, user_search=f'{{base: "ou=gone,{tree.base}", filter: "(uid={{user}})"}}')
    with pytest.raises(ProviderError, match=r"user_search.base ou=gone,.* does not exist"):
        provider.find_account(target, "alice")


# Joining and leaving groups.


@pytest.mark.parametrize(
    ("kind", "attribute"),
    [("groupOfNames", "member"), ("groupOfUniqueNames", "uniqueMember"), ("posixGroup", "memberUid")],
)
def test_each_kind_of_group_is_joined_and_left_in_its_own_attribute(
    provider: LdapProvider, tree: Tree, target: Target, kind: str, attribute: str
) -> None:
    alice = tree.add_person("alice", posix=True)
    group = tree.add_group("admins", kind)
    value = "alice" if kind == "posixGroup" else alice
    assert provider.held(target, alice, (group,)) == frozenset()
    done = provider.elevate(target, alice, (group,))
    assert done["joined"] == [group]
    assert tree.groups_of(value, attribute) == {group}
    assert provider.held(target, alice, (group,)) == {group}
    assert provider.elevate(target, alice, (group,))["already_member"] == [group]
    assert provider.withdraw(target, alice, (group,))["groups"] == {group: "left"}
    assert tree.groups_of(value, attribute) == set()
    assert provider.held(target, alice, (group,)) == frozenset()
    assert provider.withdraw(target, alice, (group,))["groups"] == {group: "was not a member"}


def test_membership_is_matched_whatever_the_spelling_of_the_member_dn(
    provider: LdapProvider, tree: Tree, target: Target
) -> None:
    alice = tree.add_person("alice")
    group = tree.add_group("admins", members=(ROOT_DN, alice.upper().replace(",", ", ")))
    assert provider.held(target, alice, (group,)) == {group}
    assert provider.withdraw(target, alice, (group,))["groups"] == {group: "left"}
    assert tree.groups_of(alice) == set()


def test_a_group_that_does_not_exist_refuses_the_elevation_before_any_group_changes(
    provider: LdapProvider, tree: Tree, target: Target
) -> None:
    alice = tree.add_person("alice")
    real = tree.add_group("admins")
    missing = tree.group_dn("nonesuch")
    with pytest.raises(ElevationRefused, match=f"group {missing} does not exist"):
        provider.elevate(target, alice, (real, missing))
    assert tree.groups_of(alice) == set()


def test_an_entry_that_is_no_group_refuses_the_elevation(
    provider: LdapProvider, tree: Tree, target: Target
) -> None:
    alice = tree.add_person("alice")
    with pytest.raises(ElevationRefused, match="is not a groupOfNames"):
        provider.elevate(target, alice, (tree.people,))


def test_withdrawing_from_a_group_that_is_gone_counts_as_done(
    provider: LdapProvider, tree: Tree, target: Target
) -> None:
    alice = tree.add_person("alice")
    group = tree.add_group("admins")
    provider.elevate(target, alice, (group,))
    tree.remove(group)
    assert provider.withdraw(target, alice, (group,))["groups"] == {group: "group does not exist"}


def test_the_member_value_of_an_entry_deleted_meanwhile_is_still_removed(
    provider: LdapProvider, tree: Tree, target: Target
) -> None:
    alice = tree.add_person("alice", posix=True)
    names = tree.add_group("admins")
    posix = tree.add_group("wheel", "posixGroup")
    provider.elevate(target, alice, (names, posix))
    tree.remove(alice)  # a new entry of the same name must not find itself a member
    assert provider.withdraw(target, alice, (names, posix))["groups"] == {names: "left", posix: "left"}
    assert tree.groups_of(alice) == set()
    assert tree.groups_of("alice", "memberUid") == set()


@pytest.mark.parametrize(
    ("kind", "attribute"), [("groupOfNames", "member"), ("groupOfUniqueNames", "uniqueMember")]
)
def test_the_last_member_leaves_a_group_that_must_have_one_and_the_group_keeps_only_itself(
    provider: LdapProvider, tree: Tree, target: Target, kind: str, attribute: str
) -> None:
    alice = tree.add_person("alice")
    group = tree.add_group("admins", kind)
    provider.elevate(target, alice, (group,))
    tree.set_members(group, attribute, [alice])  # everyone else left during the grant
    outcome = provider.withdraw(target, alice, (group,))["groups"][group]
    assert outcome == "left; the group is now its own only member (it must have one)"
    assert tree.slapd.values(group, attribute) == {group}
    assert tree.groups_of(alice, attribute) == set()
    # The placeholder does not get in the way of the next grant.
    provider.elevate(target, alice, (group,))
    assert provider.withdraw(target, alice, (group,))["groups"] == {group: "left"}


def test_a_posix_group_lists_the_uid_of_an_entry_whose_rdn_is_not_its_uid(
    provider: LdapProvider, slapd: Slapd, tree: Tree
) -> None:
    target = target_of(slapd, tree, user_search=f'{{base: "{tree.people}", filter: "(uid={{user}})"}}')
    carol = tree.add_person("carol", posix=True, rdn="cn")
    wheel = tree.add_group("wheel", "posixGroup")
    account = provider.find_account(target, "carol")
    assert account == carol
    provider.elevate(target, carol, (wheel,))
    assert tree.slapd.values(wheel, "memberUid") == {"carol"}
    tree.remove(carol)
    # Its uid can no longer be read: the withdrawal fails, visibly, rather than leave it quietly.
    with pytest.raises(ProviderError, match="cannot tell which memberUid"):
        provider.withdraw(target, carol, (wheel,))
    assert tree.slapd.values(wheel, "memberUid") == {"carol"}


def test_one_provider_serves_many_threads_at_once(provider: LdapProvider, tree: Tree, target: Target) -> None:
    group = tree.add_group("admins")
    people = [tree.add_person(f"user{n}") for n in range(12)]
    errors: list[BaseException] = []

    def elevate_and_withdraw(dn: str) -> None:
        try:
            for _ in range(3):
                provider.elevate(target, dn, (group,))
                assert provider.held(target, dn, (group,)) == {group}
                provider.withdraw(target, dn, (group,))
            provider.elevate(target, dn, (group,))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=elevate_and_withdraw, args=(dn,)) for dn in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert tree.slapd.values(group, "member") == {ROOT_DN, *people}


# TLS.


@pytest.mark.parametrize("transport", ["starttls", "ldaps"])
def test_tls_with_the_servers_ca_verified_works(
    provider: LdapProvider, slapd: Slapd, tree: Tree, transport: str
) -> None:
    ca = slapd.authority.ca_file
    options: dict[str, object] = (
        {"start_tls": True, "ca_file": ca}
        if transport == "starttls"
        else {"url": slapd.ldaps_url, "ca_file": ca}
    )
    target = target_of(slapd, tree, **options)
    health = provider.check(target)
    assert health.ok, health.detail
    alice = tree.add_person("alice")
    group = tree.add_group("admins")
    assert provider.find_account(target, "alice") == alice
    provider.elevate(target, alice, (group,))
    assert tree.groups_of(alice) == {group}


@pytest.mark.parametrize("transport", ["starttls", "ldaps"])
def test_a_certificate_the_configured_ca_did_not_sign_is_refused_in_one_line(
    provider: LdapProvider, slapd: Slapd, tree: Tree, tmp_path: Path, transport: str
) -> None:
    other = make_authority(tmp_path / "other", "some other CA").ca_file
    options: dict[str, object] = (
        {"start_tls": True, "ca_file": other}
        if transport == "starttls"
        else {"url": slapd.ldaps_url, "ca_file": other}
    )
    target = target_of(slapd, tree, **options)
    with pytest.raises(ProviderError) as caught:
        provider.find_account(target, "alice")
    assert not isinstance(caught.value, TargetUnreachable)
    message = str(caught.value)
    assert "\n" not in message
    assert f"the server's certificate is not trusted by tls_ca_file {other}" in message
    assert not provider.check(target).ok


# Errors.


def test_a_wrong_bind_password_gives_one_clear_line_without_the_password(
    slapd: Slapd, tree: Tree, target: Target, tmp_path: Path, clock: FrozenClock
) -> None:
    wrong = "not-the-password-4711"
    provider = provider_with({PASSWORD_ENV: wrong}, tmp_path, clock)
    with pytest.raises(ProviderError) as caught:
        provider.find_account(target, "alice")
    message = str(caught.value)
    assert message == (
        "ldap target corp: the directory refused the bind as cn=jitgate,ou=services,dc=example,dc=org: "
        f"invalid credentials (check the password in environment variable {PASSWORD_ENV})"
    )
    assert wrong not in message
    health = provider.check(target)
    assert not health.ok
    assert wrong not in health.detail


def test_an_empty_or_unset_password_is_refused_before_anything_binds(
    target: Target, tmp_path: Path, clock: FrozenClock
) -> None:
    with pytest.raises(
        ProviderError, match=f"the bind password in environment variable {PASSWORD_ENV} is empty"
    ):
        provider_with({PASSWORD_ENV: ""}, tmp_path, clock).find_account(target, "alice")
    with pytest.raises(ProviderError, match=f"environment variable {PASSWORD_ENV} is not set"):
        provider_with({}, tmp_path, clock).find_account(target, "alice")


def test_the_bind_password_can_come_from_a_file(
    slapd: Slapd, tree: Tree, tmp_path: Path, clock: FrozenClock
) -> None:
    secret = tmp_path / "bind-password"
    secret.write_text(slapd.service_password + "\n")
    target = target_of(slapd, tree, password_file=secret)
    alice = tree.add_person("alice")
    assert provider_with({}, tmp_path, clock).find_account(target, "alice") == alice


def test_a_directory_that_refuses_connections_is_unreachable(
    provider: LdapProvider, slapd: Slapd, tree: Tree
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    target = target_of(slapd, tree, url=f"ldap://127.0.0.1:{port}")
    with pytest.raises(TargetUnreachable, match=f"cannot reach ldap://127.0.0.1:{port}"):
        provider.find_account(target, "alice")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_directory_that_never_answers_times_out(
    provider: LdapProvider, slapd: Slapd, tree: Tree, silent_port: int
) -> None:
    target = target_of(slapd, tree, url=f"ldap://127.0.0.1:{silent_port}", options="{timeout: 1}")
    with pytest.raises(TargetUnreachable, match="did not answer within 1s"):
        provider.find_account(target, "alice")


def test_pooled_connections_recover_from_a_directory_restart(
    provider: LdapProvider, slapd: Slapd, tree: Tree, target: Target
) -> None:
    alice = tree.add_person("alice")
    assert provider.find_account(target, "alice") == alice
    slapd.stop()
    with pytest.raises(TargetUnreachable):
        provider.find_account(target, "alice")
    slapd.start()
    assert provider.find_account(target, "alice") == alice


def test_plaintext_to_a_remote_host_is_refused_without_connecting(
    provider: LdapProvider, slapd: Slapd, tree: Tree
) -> None:
    role, target = policy_of(slapd, tree, url="ldap://directory.invalid")
    problem = (
        "ldap target corp: ldap://directory.invalid without start_tls would send the bind password in "
        "clear to a remote host; use ldaps:// or start_tls: true"
    )
    assert provider.validate(role, target) == [problem]
    with pytest.raises(ProviderError) as caught:
        provider.find_account(target, "alice")
    assert str(caught.value) == problem


def test_validate_needs_no_server_and_names_each_problem(
    provider: LdapProvider, slapd: Slapd, tree: Tree
) -> None:
    role, fine = policy_of(slapd, tree, url="ldaps://directory.invalid")
    assert provider.validate(role, fine) == []
    _, both = policy_of(slapd, tree, url="ldaps://directory.invalid", start_tls=True)
    assert provider.validate(role, both) == [
        "ldap target corp: start_tls is for ldap:// URLs; ldaps:// is TLS already"
    ]
    _, plain_ca = policy_of(slapd, tree, ca_file=Path("/etc/ssl/ca.pem"), options="{timeout: 0, pool: 2}")
    assert provider.validate(role, plain_ca) == [
        "ldap target corp: unknown option(s) pool",
        "ldap target corp: timeout must be 1 to 300",
        "ldap target corp: tls_ca_file is set but the connection is not TLS (set start_tls: true)",
    ]
    _, bad_filter = policy_of(slapd, tree, user_search='{base: "ou=people,dc=x", filter: "uid={user}"}')
    assert provider.validate(role, bad_filter) == [
        "ldap target corp: user_search.filter 'uid={user}' is not a parenthesised LDAP filter"
    ]


def test_an_ldap_target_issues_no_credential_and_revoking_a_handle_does_nothing(
    provider: LdapProvider, slapd: Slapd, tree: Tree, clock: FrozenClock
) -> None:
    role, target = policy_of(slapd, tree)
    now = clock.now()
    grant = Grant(
        id="g1",
        request_id="r1",
        holder="alice",
        role=role.name,
        targets=(target.name,),
        starts_at=now,
        expires_at=now + timedelta(hours=1),
        state=RequestState.ACTIVE,
    )
    request = IssueRequest(grant=grant, role=role, target=target, identity=Identity("alice"), now=now)
    with pytest.raises(
        ProviderError, match="ldap target corp elevates existing directory entries into groups"
    ):
        provider.issue(request, provider.new_handle(request))
    assert provider.revoke(target, "elevation:1:corp") is None
    assert provider.revocable is True


def test_the_registry_loads_the_ldap_provider_as_an_elevation_provider(
    environ: dict[str, str], tmp_path: Path, clock: FrozenClock
) -> None:
    loaded = discover(ProviderContext(data_dir=tmp_path, environ=environ, clock=clock), {"ldap"}, found=[])
    assert loaded.problems == ()
    assert isinstance(loaded.providers["ldap"], LdapProvider)
    assert isinstance(loaded.providers["ldap"], ElevationProvider)


def test_a_group_replaced_by_another_kind_under_the_same_dn_is_read_again(
    provider: LdapProvider, tree: Tree, target: Target
) -> None:
    alice = tree.add_person("alice", posix=True)
    group = tree.add_group("admins")
    provider.elevate(target, alice, (group,))
    provider.withdraw(target, alice, (group,))
    tree.remove(group)
    tree.add_group("admins", "posixGroup")
    # What the group was is remembered for a while; the change that fails forgets it, and the
    # next attempt (the work queue retries) reads the group again.
    with pytest.raises(ProviderError, match="Object class violation"):
        provider.elevate(target, alice, (group,))
    assert provider.elevate(target, alice, (group,))["joined"] == [group]
    assert tree.slapd.values(group, "memberUid") == {"alice"}
