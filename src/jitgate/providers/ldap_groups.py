"""Group membership in a directory: which attribute makes an entry a member, and joining and leaving.

What a group is decides where its members are, read from its ``objectClass`` once per call:

    groupOfNames, groupOfMembers, group (Active Directory)   member        the entry's DN
    groupOfUniqueNames                                       uniqueMember  the entry's DN
    posixGroup                                               memberUid     the entry's uid

A group of several of these (rfc2307bis puts posixGroup beside groupOfNames) is joined in each
attribute, counts as held only when held in each, and is left in each: nothing an elevation gave
survives it, even if it took back a half-membership the entry had before. The uid of a posixGroup
member is the value of the entry's RDN when that is ``uid=...``, else the entry's one ``uid``.

Membership is tested with LDAP compare, which uses the attribute's own matching rule (a DN in
any spelling matches), and never reads a group's whole member list (Active Directory hands out
large ones only in ranges).

Joining a group one is in already is success (``TYPE_OR_VALUE_EXISTS``; Active Directory says
``ALREADY_EXISTS``), leaving one one is not in too (``NO_SUCH_ATTRIBUTE``; Active Directory says
``UNWILLING_TO_PERFORM``, so there compare confirms it). A group that does not exist refuses the
elevation for good; at withdrawal it counts as left.

groupOfNames and groupOfUniqueNames must have a member (X.521), so the server refuses to remove
the last one (``OBJECT_CLASS_VIOLATION``). That happens when everyone else left the group during
the grant. Keeping the entry in the group would let access outlive its grant, and deleting the
group would destroy what is not ours; so the same modify, atomically, removes the entry and makes
the group its own member, a placeholder no one can bind as. The audit record says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import ldap
import ldap.dn

from jitgate.errors import ElevationRefused, ProviderError
from jitgate.providers.ldap_connection import Connection

MEMBER_ATTRIBUTE = {
    "groupofnames": "member",
    "groupofmembers": "member",
    "group": "member",
    "groupofuniquenames": "uniqueMember",
    "posixgroup": "memberUid",
}
KINDS = "groupOfNames, groupOfMembers, groupOfUniqueNames, group or posixGroup"
# Membership attributes that their object class requires to have at least one value.
MUST_HAVE_A_MEMBER = {"groupofnames": "member", "groupofuniquenames": "uniqueMember"}

JOINED = "joined"
ALREADY = "already a member"
LEFT = "left"
NOT_MEMBER = "was not a member"
GONE = "group does not exist"
PLACEHOLDER = "left; the group is now its own only member (it must have one)"


@dataclass(frozen=True, slots=True)
class Group:
    """A group as found: its DN as the policy spells it, and where its members are kept."""

    dn: str
    object_classes: frozenset[str]

    @property
    def attributes(self) -> tuple[str, ...]:
        """The membership attributes of the group (empty: not a kind of group we know)."""
        found = {MEMBER_ATTRIBUTE[name] for name in self.object_classes if name in MEMBER_ATTRIBUTE}
        return tuple(sorted(found))

    @property
    def needs_uid(self) -> bool:
        return "memberUid" in self.attributes


KIND_SECONDS = 60.0


class GroupKinds:
    """What each group is (its object classes), remembered for ``KIND_SECONDS`` after it was read.

    A burst of grants into one group (a thousand ending in the same minute) then costs one read
    of the group instead of one per call. Remembering is safe for leaving too: a group's structural
    class cannot change, and a member was added under the kind known then, which is the kind
    remembered. A group that does not exist is never remembered (it may be created any moment),
    and one found gone by a modify is forgotten.
    """

    def __init__(
        self, *, seconds: float = KIND_SECONDS, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._seconds = seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], tuple[float, Group]] = {}

    def get(self, conn: Connection, target: str, dn: str) -> Group | None:
        now = self._monotonic()
        with self._lock:
            known = self._known.get((target, dn))
        if known is not None and now - known[0] < self._seconds:
            return known[1]
        group = read_group(conn, dn)
        with self._lock:
            if group is None:
                self._known.pop((target, dn), None)
            else:
                self._known[(target, dn)] = (now, group)
        return group

    def forget(self, target: str, dn: str) -> None:
        with self._lock:
            self._known.pop((target, dn), None)


def read_group(conn: Connection, dn: str) -> Group | None:
    """The group ``dn`` or None when no such entry exists."""
    try:
        found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["objectClass"])
    except (ldap.NO_SUCH_OBJECT, ldap.INVALID_DN_SYNTAX):
        return None
    entries = [attributes for entry_dn, attributes in found if entry_dn is not None]
    if not entries:
        return None
    classes = frozenset(
        value.decode("utf-8", "replace").lower() for value in entries[0].get("objectClass", [])
    )
    return Group(dn=dn, object_classes=classes)


@dataclass(frozen=True, slots=True)
class Uid:
    """The uid a posixGroup lists the entry by, or why there is none."""

    value: str | None
    problem: str = ""
    entry_gone: bool = False


def uid_of(conn: Connection, entry_dn: str) -> Uid:
    rdn = ldap.dn.str2dn(entry_dn)[0]
    if len(rdn) == 1 and str(rdn[0][0]).lower() == "uid":
        return Uid(str(rdn[0][1]))
    try:
        found = conn.search_s(entry_dn, ldap.SCOPE_BASE, "(objectClass=*)", ["uid"])
    except ldap.NO_SUCH_OBJECT:
        return Uid(None, f"entry {entry_dn} no longer exists and its RDN is not a uid", entry_gone=True)
    entries = [attributes for dn, attributes in found if dn is not None]
    values = [value.decode() for value in entries[0].get("uid", [])] if entries else []
    if len(values) != 1:
        return Uid(None, f"entry {entry_dn} has {len(values)} uid values; a posixGroup lists exactly one")
    return Uid(values[0])


def value_for(attribute: str, entry_dn: str, uid: Uid | None) -> bytes:
    if attribute == "memberUid":
        if uid is None or uid.value is None:
            raise ProviderError(f"no uid for entry {entry_dn}")
        return uid.value.encode()
    return entry_dn.encode()


def has(conn: Connection, group: Group, attribute: str, value: bytes) -> bool:
    try:
        return bool(conn.compare_s(group.dn, attribute, value))
    except (ldap.NO_SUCH_ATTRIBUTE, ldap.NO_SUCH_OBJECT):
        return False


def is_member(conn: Connection, group: Group, entry_dn: str, uid: Uid | None) -> bool:
    """True when the entry is a member in every membership attribute of the group."""
    if not group.attributes or (group.needs_uid and (uid is None or uid.value is None)):
        return False
    return all(has(conn, group, name, value_for(name, entry_dn, uid)) for name in group.attributes)


def join(conn: Connection, group: Group, attribute: str, value: bytes) -> str:
    try:
        conn.modify_s(group.dn, [(ldap.MOD_ADD, attribute, [value])])
    except (ldap.TYPE_OR_VALUE_EXISTS, ldap.ALREADY_EXISTS):
        return ALREADY
    except ldap.NO_SUCH_OBJECT:
        raise ElevationRefused(f"group {group.dn} does not exist") from None
    return JOINED


def leave(conn: Connection, group: Group, attribute: str, value: bytes) -> str:
    try:
        conn.modify_s(group.dn, [(ldap.MOD_DELETE, attribute, [value])])
    except ldap.NO_SUCH_ATTRIBUTE:
        return NOT_MEMBER
    except ldap.NO_SUCH_OBJECT:
        return GONE
    except ldap.UNWILLING_TO_PERFORM:
        if not has(conn, group, attribute, value):
            return NOT_MEMBER
        raise
    except ldap.OBJECT_CLASS_VIOLATION:
        if attribute not in {MUST_HAVE_A_MEMBER.get(name) for name in group.object_classes}:
            raise
        return _leave_as_last(conn, group, attribute, value)
    return LEFT


def _leave_as_last(conn: Connection, group: Group, attribute: str, value: bytes) -> str:
    try:
        conn.modify_s(
            group.dn, [(ldap.MOD_DELETE, attribute, [value]), (ldap.MOD_ADD, attribute, [group.dn.encode()])]
        )
    except ldap.NO_SUCH_ATTRIBUTE:
        return NOT_MEMBER
    except ldap.NO_SUCH_OBJECT:
        return GONE
    return PLACEHOLDER
