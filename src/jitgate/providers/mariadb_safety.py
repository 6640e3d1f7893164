"""What the MariaDB provider refuses to hand out: role names that would need quoting, and privilege
specs outside a fixed list of object privileges (no ``ALL``, no ``GRANT OPTION``, no global
privileges, no ``*.*``, no system schema). Checked without a server at policy load and again at
issue, before anything is created.

A role given to an existing account (``role_grants_problem``) is judged by what the server says it
holds, its own grants and those of every role granted to it (``SHOW GRANTS FOR`` the role): no
privilege on ``*.*`` but ``USAGE``, nothing ``WITH GRANT OPTION`` or ``WITH ADMIN OPTION``, nothing
in a system schema (also through a database pattern such as ``%``), and nothing else that is not a
plain role or object grant (``PROXY``, say). Each of those would let the account leave standing
access behind or reach every account's password hash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from jitgate.errors import ProviderError
from jitgate.policy.model import Target

ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
PRIVILEGE_SPEC = re.compile(
    r"^\s*(?P<privileges>[A-Za-z ,]+?)\s+ON\s+"
    r"(?P<database>[A-Za-z0-9_]{1,64})\.(?P<table>\*|[A-Za-z0-9_]{1,64})\s*$",
    re.IGNORECASE,
)
OBJECT_PRIVILEGES = frozenset(
    {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "EXECUTE",
        "SHOW VIEW",
        "CREATE",
        "DROP",
        "ALTER",
        "INDEX",
        "REFERENCES",
        "CREATE VIEW",
        "CREATE ROUTINE",
        "ALTER ROUTINE",
        "TRIGGER",
        "EVENT",
        "LOCK TABLES",
        "CREATE TEMPORARY TABLES",
        "DELETE HISTORY",
    }
)
# Privileges with which a login defines objects that run as their DEFINER, and those the admin
# needs at the same level to see and drop such objects at revocation.
DEFINING = frozenset({"CREATE VIEW", "CREATE ROUTINE", "EVENT", "TRIGGER"})
SWEEPING = frozenset({"SHOW VIEW", "TRIGGER", "EVENT", "ALTER ROUTINE", "DROP"})
SYSTEM_SCHEMAS = frozenset({"mysql", "information_schema", "performance_schema", "sys"})
RESERVED_ROLES = frozenset({"public", "none"})


@dataclass(frozen=True, slots=True)
class Privilege:
    """One validated privilege spec: ``privileges ON database.table`` (``table`` None for ``db.*``)."""

    privileges: tuple[str, ...]
    database: str
    table: str | None

    def __str__(self) -> str:
        return f"{', '.join(self.privileges)} ON {self.database}.{self.table or '*'}"

    def grant_sql(self) -> str:
        """``GRANT ... TO %s@%s``: names are whitelisted, then backtick-quoted; the user is a parameter."""
        on = f"`{self.database}`.{f'`{self.table}`' if self.table else '*'}"
        return f"GRANT {', '.join(self.privileges)} ON {on} TO %s@%s"


def parse_privilege(spec: str) -> Privilege:
    """Validate ``SELECT, INSERT ON db.table`` or ``SELECT ON db.*``; refuse anything else."""
    usage = "write PRIVILEGE[, PRIVILEGE] ON database.* or ON database.table"
    match = PRIVILEGE_SPEC.fullmatch(spec)
    if not match:
        raise ProviderError(f"privilege spec {spec!r} is not allowed: {usage}")
    privileges = tuple(" ".join(part.split()).upper() for part in match["privileges"].split(","))
    refused = [p or "(empty)" for p in privileges if p not in OBJECT_PRIVILEGES]
    if refused:
        raise ProviderError(f"privilege spec {spec!r}: {', '.join(refused)} may not be handed out")
    if match["database"].lower() in SYSTEM_SCHEMAS:
        raise ProviderError(f"privilege spec {spec!r}: system schema {match['database']} is off limits")
    table = None if match["table"] == "*" else match["table"]
    return Privilege(tuple(dict.fromkeys(privileges)), match["database"], table)


def role_name(name: str, target: Target) -> str:
    problem = role_problem(name, target)
    if problem:
        raise ProviderError(problem)
    return name


def role_problem(name: str, target: Target) -> str | None:
    if not ROLE_NAME.fullmatch(name):
        return f"role name {name!r} for target {target.name} would need quoting; use letters, digits and _"
    if name.lower() in RESERVED_ROLES:
        return f"role name {name!r} for target {target.name} is reserved by MariaDB"
    return None


def unsweepable(
    grants: Sequence[Privilege], held: Mapping[tuple[str | None, str | None], set[str]], target: Target
) -> str | None:
    """Why a login given ``grants`` could define objects the admin (holding ``held``) could not
    find and drop at revocation; ``None`` when every such object would be in the admin's sight."""
    for grant in grants:
        if not DEFINING & set(grant.privileges):
            continue
        levels: list[tuple[str | None, str | None]] = [(None, None), (grant.database, None)]
        if grant.table is not None:
            levels.append((grant.database, grant.table))
        have = set().union(*(held.get(level, set()) for level in levels))
        if "ALL PRIVILEGES" in have or have >= SWEEPING:
            continue
        missing = ", ".join(sorted(SWEEPING - have))
        return (
            f"privilege spec {grant} on target {target.name}: the admin could not see or drop what"
            f" the login defines there (it needs {missing} on {grant.database}.*)"
        )
    return None


_NAME = r"`(?:[^`]|``)+`"
ROLE_GRANT = re.compile(rf"^GRANT (?P<role>{_NAME}) TO (?P<grantee>{_NAME})(?P<admin> WITH ADMIN OPTION)?$")
OBJECT_GRANT = re.compile(
    rf"^GRANT (?P<privileges>.+?) ON (?:(?:PROCEDURE|FUNCTION|PACKAGE BODY|PACKAGE) )?"
    rf"(?P<on>\*\.\*|(?P<database>{_NAME})\.(?:\*|{_NAME})) TO (?P<grantee>{_NAME})"
    r"(?P<grant> WITH GRANT OPTION)?$"
)


def role_grants_problem(role: str, lines: Iterable[str]) -> str | None:
    """Why ``role``, holding what ``SHOW GRANTS FOR`` it printed (``lines``), may not be given to an
    existing account; None when it holds plain object privileges and plain roles only."""
    for line in lines:
        if found := ROLE_GRANT.fullmatch(line):
            if found["admin"]:
                held = _unquoted(found["role"])
                return f"{_holder(role, found['grantee'])} holds role {held} WITH ADMIN OPTION"
            continue
        found = OBJECT_GRANT.fullmatch(line)
        if found is None:
            return f"{_holder(role, _grantee_of(line))} holds a grant jitgate does not hand out: {line[:120]}"
        holder = _holder(role, found["grantee"])
        if found["grant"]:
            return f"{holder} holds GRANT OPTION ({found['privileges']} ON {found['on']})"
        if found["on"] == "*.*" and found["privileges"].strip().upper() != "USAGE":
            return f"{holder} holds global privileges ({found['privileges']} ON *.*)"
        if found["database"] and (schema := _system_schema(_unquoted(found["database"]))):
            what = f"{found['privileges']} ON {found['on']}"
            return f"{holder} holds privileges in the system schema {schema} ({what})"
    return None


def _system_schema(pattern: str) -> str | None:
    """The system schema a database name or pattern (``%``, ``_``, ``\\`` escapes) covers, if any."""
    regex = ""
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            regex += re.escape(next(chars, ""))
        else:
            regex += {"%": ".*", "_": "."}.get(char, re.escape(char))
    return next((s for s in sorted(SYSTEM_SCHEMAS) if re.fullmatch(regex, s, re.IGNORECASE)), None)


def _unquoted(name: str) -> str:
    return name[1:-1].replace("``", "`")


def _holder(role: str, grantee: str | None) -> str:
    name = _unquoted(grantee) if grantee else None
    return "it" if name in (None, role) else f"through role {name} it"


def _grantee_of(line: str) -> str | None:
    found = re.search(rf" TO ({_NAME})", line)
    return found[1] if found else None
