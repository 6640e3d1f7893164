"""Directory groups (LDAP, Active Directory compatible): an existing entry joins groups for a grant.

Kind ``ldap`` only elevates: there is no credential to hand out, so ``issue`` refuses and revoking
a handle does nothing; the broker's elevation queue calls ``find_account``, ``held``, ``elevate``
and ``withdraw`` (``ElevationProvider``) and keeps count of who holds which group.

The identity's entry is found by the target's ``user_dn`` template (``uid={user},ou=people,...``,
the account filled in with RFC 4514 escaping, looked up with a base-scope search) or by its
``user_search`` (``{base, filter}``, the account filled into the filter with RFC 4515 escaping;
exactly one entry must match: none is a missing account, several refuse the elevation). Either
way the entry's DN, as the directory spells it, is the account the broker records and passes
back to ``held``, ``elevate`` and ``withdraw``. Identity names are case-sensitive (``Bob`` and
``bob`` are two people) but the directory matches ``uid``, ``cn`` or ``mail`` ignoring case and
extra spaces, so the entry found must also hold, exactly, the value the template or filter spells
with the name (``_spelled``); an entry that holds it only in another case is no account of the
identity's. An assertion other than ``attribute=value`` (``~=``, ``:rule:=``) is the filter's own.

Membership semantics (which attribute, placeholders, Active Directory's answers) are in
``ldap_groups``; connections, TLS, the bind secret and errors in ``ldap_connection``. Every call
runs on one pooled connection and reads each group's ``objectClass`` at most once (remembered for
a minute, ``ldap_groups.GroupKinds``).

Nothing here ends sessions: a directory has none. What consumers cached (SSSD, nscd, an
application's own session) lasts as long as their caches do; the docs say so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import ldap
import ldap.dn
import ldap.filter

from jitgate.errors import ElevationRefused, ProviderError
from jitgate.policy.accounts import PLACEHOLDER
from jitgate.policy.model import Role, Target
from jitgate.providers.base import Health, Issued, IssueRequest, ProviderContext
from jitgate.providers.ldap_connection import Connection, Directory, option_problems
from jitgate.providers.ldap_groups import (
    ALREADY,
    GONE,
    KINDS,
    Group,
    GroupKinds,
    Uid,
    is_member,
    join,
    leave,
    uid_of,
    value_for,
)

KIND = "ldap"
_SAMPLE = "jitgate-check"
# An equality assertion of a filter whose value holds the placeholder: (attribute=...{user}...).
_ASSERTION = re.compile(r"\(([A-Za-z][A-Za-z0-9;.-]*)=([^()*]*\{user\}[^()*]*)\)")
_HEX_ESCAPE = re.compile(rb"\\([0-9A-Fa-f]{2})")


class LdapProvider:
    """Elevation of directory entries into groups. One instance serves every thread."""

    kind = KIND
    revocable = True

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._directory = Directory(environ)
        self._kinds = GroupKinds()

    def close(self) -> None:
        """Close the pooled connections (new ones are opened if the provider is used again)."""
        self._directory.close()

    # CredentialProvider: elevation only.

    def new_handle(self, request: IssueRequest) -> str:
        return f"elevation:{request.grant.id}:{request.target.name}"

    def issue(self, request: IssueRequest, handle: str) -> Issued:
        raise ProviderError(
            f"ldap target {request.target.name} elevates existing directory entries into groups; "
            "it issues no credential (connect as yourself)"
        )

    def revoke(self, target: Target, handle: str) -> Mapping[str, Any] | None:
        return None  # nothing is ever issued; memberships are withdrawn through ``withdraw``

    def check(self, target: Target) -> Health:
        try:
            who = self._directory.probe(target)
        except ProviderError as exc:
            return Health(False, exc.message)
        return Health(True, f"bound to {self._directory.settings(target).url} as {who.removeprefix('dn:')}")

    def validate(self, role: Role, target: Target) -> list[str]:
        """Problems of ``role`` on ``target`` found without a server: URL and TLS, templates, filter."""
        problems = option_problems(target)
        where = f"ldap target {target.name}"
        if target.user_dn is not None:
            try:
                ldap.dn.str2dn(_filled_dn(target.user_dn, _SAMPLE))
            except ldap.DECODING_ERROR:
                problems.append(f"{where}: user_dn {target.user_dn!r} does not make a DN")
        if target.user_search is not None:
            try:
                ldap.dn.str2dn(target.user_search.base)
            except ldap.DECODING_ERROR:
                problems.append(f"{where}: user_search.base {target.user_search.base!r} is not a DN")
            if problem := _filter_problem(target.user_search.filter):
                problems.append(f"{where}: user_search.filter {problem}")
        if role.ldap is None:
            problems.append(f"role {role.name} reaches ldap target {target.name} but has no ldap:")
        return problems

    # ElevationProvider.

    def find_account(self, target: Target, account: str) -> str | None:
        """The DN of the entry ``account`` maps to (as the directory spells it), or None."""
        return self._directory.run(target, "look up the entry", lambda conn: _find(conn, target, account))

    def held(self, target: Target, account: str, items: tuple[str, ...]) -> frozenset[str]:
        """The groups among ``items`` that have the entry ``account`` (a DN) as a direct member."""

        def work(conn: Connection) -> frozenset[str]:
            groups = {dn: self._kinds.get(conn, target.name, dn) for dn in items}
            uid = _uid_if_needed(conn, account, groups.values())
            return frozenset(
                dn
                for dn, group in groups.items()
                if group is not None and is_member(conn, group, account, uid)
            )

        return self._directory.run(target, "read group memberships", work)

    def elevate(self, target: Target, account: str, items: tuple[str, ...]) -> Mapping[str, Any]:
        """Add the entry to each group; every group is checked before any is changed."""

        def work(conn: Connection) -> Mapping[str, Any]:
            groups: list[Group] = []
            for dn in items:
                group = self._kinds.get(conn, target.name, dn)
                if group is None:
                    raise ElevationRefused(f"ldap target {target.name}: group {dn} does not exist")
                if not group.attributes:
                    raise ElevationRefused(f"ldap target {target.name}: {dn} is not a {KINDS}")
                groups.append(group)
            uid = _uid_if_needed(conn, account, groups)
            if uid is not None and uid.value is None:
                raise ElevationRefused(f"ldap target {target.name}: {uid.problem}")
            joined: list[str] = []
            already: list[str] = []
            for group in groups:
                with self._forgotten_on_failure(target, group.dn):
                    outcomes = {
                        join(conn, group, name, value_for(name, account, uid)) for name in group.attributes
                    }
                (already if outcomes == {ALREADY} else joined).append(group.dn)
            return {"member": account, "joined": joined, "already_member": already}

        return self._directory.run(target, "add members to groups", work)

    def withdraw(self, target: Target, account: str, items: tuple[str, ...]) -> Mapping[str, Any]:
        """Remove the entry from each group. A group or entry that is gone counts as withdrawn, but
        the member value is removed even when the entry is gone (a new entry of that DN must not
        inherit the membership)."""

        def work(conn: Connection) -> Mapping[str, Any]:
            groups = {dn: self._kinds.get(conn, target.name, dn) for dn in items}
            uid = _uid_if_needed(conn, account, groups.values())
            outcome: dict[str, str] = {}
            for dn, group in groups.items():
                if group is None:
                    outcome[dn] = GONE
                    continue
                if not group.attributes:
                    raise ProviderError(
                        f"ldap target {target.name}: {dn} is no longer a {KINDS}; "
                        f"remove {account} from it by hand"
                    )
                if group.needs_uid and (uid is None or uid.value is None):
                    raise ProviderError(
                        f"ldap target {target.name}: cannot tell which memberUid of {dn} to remove: "
                        f"{uid.problem if uid else 'no uid'}"
                    )
                with self._forgotten_on_failure(target, dn):
                    results = [
                        leave(conn, group, name, value_for(name, account, uid)) for name in group.attributes
                    ]
                if GONE in results:
                    self._kinds.forget(target.name, dn)
                outcome[dn] = "; ".join(dict.fromkeys(results))
            return {"member": account, "groups": outcome}

        return self._directory.run(target, "remove members from groups", work)

    @contextmanager
    def _forgotten_on_failure(self, target: Target, dn: str) -> Iterator[None]:
        """A change to a group that fails forgets what the group is: it may have been replaced by
        another kind of group under the same DN, and the next attempt reads it again."""
        try:
            yield
        except ElevationRefused as exc:
            self._kinds.forget(target.name, dn)
            raise ElevationRefused(f"ldap target {target.name}: {exc.message}") from None
        except BaseException:
            self._kinds.forget(target.name, dn)
            raise


def _filled_dn(template: str, account: str) -> str:
    return template.replace(PLACEHOLDER, ldap.dn.escape_dn_chars(account))


def _filter_problem(text: str) -> str | None:
    sample = text.replace(PLACEHOLDER, _SAMPLE)
    depth = 0
    for char in sample:
        depth += (char == "(") - (char == ")")
        if depth < 0:
            break
    if not (sample.startswith("(") and sample.endswith(")")) or depth != 0:
        return f"{text!r} is not a parenthesised LDAP filter"
    return None


def _find(conn: Connection, target: Target, account: str) -> str | None:
    if target.user_dn is not None:
        spelled = _dn_values(target.user_dn, account)
        try:
            found = conn.search_s(
                _filled_dn(target.user_dn, account), ldap.SCOPE_BASE, "(objectClass=*)", _wanted(spelled)
            )
        except (ldap.NO_SUCH_OBJECT, ldap.INVALID_DN_SYNTAX):
            return None
        return next((str(dn) for dn, got in found if dn is not None and _spelled(spelled, got)), None)
    search = target.user_search
    if search is None:
        raise ProviderError(f"ldap target {target.name} has neither user_dn nor user_search")
    spelled = _filter_values(search.filter, account)
    query = search.filter.replace(PLACEHOLDER, ldap.filter.escape_filter_chars(account))
    try:
        found = conn.search_ext_s(search.base, ldap.SCOPE_SUBTREE, query, _wanted(spelled), sizelimit=2)
    except ldap.SIZELIMIT_EXCEEDED:
        found = [("", {}), ("", {})]
    except ldap.NO_SUCH_OBJECT:
        raise ProviderError(
            f"ldap target {target.name}: user_search.base {search.base} does not exist"
        ) from None
    except ldap.FILTER_ERROR:
        raise ProviderError(f"ldap target {target.name}: the directory refused user_search.filter") from None
    entries = [(str(dn), got) for dn, got in found if dn is not None]  # referrals carry no DN
    if len(entries) > 1:
        # Which of them the identity is cannot be told: refused for good, not "missing".
        raise ElevationRefused(
            f"ldap target {target.name}: user_search matches several entries for {account}; exactly one must"
        )
    return entries[0][0] if entries and _spelled(spelled, entries[0][1]) else None


def _dn_values(template: str, account: str) -> list[tuple[str, bytes]]:
    """(attribute, exact value) of each part of the ``user_dn`` template that holds the name."""
    marker = "\ue000jitgate\ue000"  # private use: in no template
    rdns = ldap.dn.str2dn(template.replace(PLACEHOLDER, ldap.dn.escape_dn_chars(marker)))
    return [
        (str(attribute).lower(), str(value).replace(marker, account).encode())
        for rdn in rdns
        for attribute, value, _ in rdn
        if marker in str(value)
    ]


def _filter_values(text: str, account: str) -> list[tuple[str, bytes]]:
    """(attribute, exact value) of each equality assertion of the filter that holds the name."""
    found: list[tuple[str, bytes]] = []
    for attribute, value in _ASSERTION.findall(text):
        parts = [
            _HEX_ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), part.encode())
            for part in value.split(PLACEHOLDER)
        ]
        found.append((attribute.lower(), account.encode().join(parts)))
    return found


def _wanted(spelled: list[tuple[str, bytes]]) -> list[str]:
    return sorted({attribute for attribute, _ in spelled}) or ["1.1"]


def _spelled(spelled: list[tuple[str, bytes]], got: Mapping[str, list[bytes]]) -> bool:
    """Whether the entry holds exactly (case and spaces too) one value the template spells."""
    if not spelled:
        return True
    values = {(name.lower(), value) for name, held in got.items() for value in held}
    return any(wanted in values for wanted in spelled)


def _uid_if_needed(conn: Connection, account: str, groups: Iterable[Group | None]) -> Uid | None:
    if any(group is not None and group.needs_uid for group in groups):
        return uid_of(conn, account)
    return None


def create_provider(ctx: ProviderContext) -> LdapProvider:
    return LdapProvider(ctx.environ)
