"""What the MariaDB provider refuses to hand out: role names that would need quoting, and privilege
specs outside a fixed list of object privileges (no ``ALL``, no ``GRANT OPTION``, no global
privileges, no ``*.*``, no system schema). Checked without a server at policy load and again at
issue, before anything is created.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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
