"""What the PostgreSQL provider refuses: names that would need quoting, roles it will not hand out,
and owners it will not hand a revoked login's objects to.

A ``member_of`` role handed out — to a fresh login or to an existing one — must not have SUPERUSER,
CREATEROLE, BYPASSRLS or REPLICATION, nor be a member of a role that has one, by any membership
(role attributes are not inherited, but ``SET ROLE`` reaches them; the first two let the login leave
standing access behind, the others read past row security or the whole cluster's data), nor reach
one of the predefined roles that give the server's files or programs, nor hold admin option on any
role (itself or through a membership: with it, the login could grant that role to itself for
good). A ``reassign_to`` owner is
held to more, since everything it receives may run code as it: see ``owner_problem``. Names are
checked without a server at policy load; roles and owners at the server, at issue, at elevation and
at every revocation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from jitgate.errors import ProviderError
from jitgate.policy.model import Target

Connection = psycopg.Connection[tuple[Any, ...]]

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
RESERVED_ROLES = frozenset({"public", "none", "current_user", "current_role", "session_user"})
# Members of these may read or write any server file or run programs as the server's OS user:
# superuser in all but name, whatever the role's own attributes say.
SERVER_ACCESS_ROLES = frozenset(
    {"pg_execute_server_program", "pg_read_server_files", "pg_write_server_files"}
)
# Predefined roles whose members can also read or write every table or end other sessions: an
# owner in any of them, or in the ones above, is no harmless owner.
POWERFUL_PREDEFINED = tuple(
    sorted(SERVER_ACCESS_ROLES | {"pg_read_all_data", "pg_write_all_data", "pg_signal_backend"})
)

_OWNER_CHECK = """
SELECT pg_has_role(current_user, o.oid, 'USAGE'), p.rolname, CASE
           WHEN p.rolname = current_user THEN 'is the admin role'
           WHEN p.rolsuper THEN 'is a superuser'
           WHEN p.rolcreaterole THEN 'has CREATEROLE'
           WHEN p.rolbypassrls THEN 'has BYPASSRLS'
           WHEN p.rolreplication THEN 'has REPLICATION'
           ELSE 'reaches the whole server' END
  FROM pg_roles o
  LEFT JOIN LATERAL (
        SELECT * FROM pg_roles r
         WHERE pg_has_role(o.oid, r.oid, 'MEMBER')
           AND (r.rolsuper OR r.rolcreaterole OR r.rolbypassrls OR r.rolreplication
                OR r.rolname = current_user OR r.rolname = ANY(%(powerful)s))
         ORDER BY r.oid = o.oid DESC, r.rolname LIMIT 1) p ON true
 WHERE o.rolname = %(owner)s
"""


def owner_problem(conn: Connection, owner: str) -> str | None:
    """Why ``owner`` may not receive a revoked login's objects; ``None`` when it is harmless.

    ``pg_has_role(..., 'MEMBER')`` follows every membership, with or without INHERIT or SET, and
    counts the role itself, so the owner's own attributes are checked by the same query.
    """
    row = conn.execute(_OWNER_CHECK, {"owner": owner, "powerful": list(POWERFUL_PREDEFINED)}).fetchone()
    if row is None:
        return f"reassign_to role {owner} does not exist"
    usable, privileged, why = row
    if privileged == owner:
        return f"reassign_to role {owner} {why}"
    if privileged is not None:
        return f"reassign_to role {owner} is a member of {privileged}, which {why}"
    if not usable:
        return f"reassign_to role {owner}: the admin lacks its privileges"
    return None


def role_name(name: str, target: Target) -> str:
    problem = role_problem(name, target)
    if problem:
        raise ProviderError(problem)
    return name


def role_problem(name: str, target: Target) -> str | None:
    if not ROLE_NAME.fullmatch(name):
        return (
            f"role name {name!r} for target {target.name} would need quoting; use lowercase letters, "
            "digits and _"
        )
    if name in RESERVED_ROLES:
        return f"role name {name!r} for target {target.name} is reserved by PostgreSQL"
    if name in SERVER_ACCESS_ROLES:
        return f"role {name} on target {target.name} gives access to the server's files or programs"
    return None


_MEMBER_OF_CHECK = sql.SQL("""
SELECT r.rolname, a.rolname, p.rolname, CASE
           WHEN p.rolsuper THEN 'SUPERUSER'
           WHEN p.rolcreaterole THEN 'CREATEROLE'
           WHEN p.rolbypassrls THEN 'BYPASSRLS'
           WHEN p.rolreplication THEN 'REPLICATION'
           ELSE 'access to the server''s files or programs' END
  FROM pg_roles r
  LEFT JOIN LATERAL (
        SELECT * FROM pg_roles s
         WHERE (s.rolsuper OR s.rolcreaterole OR s.rolbypassrls OR s.rolreplication
                OR s.rolname = ANY({server_access}))
           AND pg_has_role(r.oid, s.oid, 'MEMBER')
         ORDER BY s.oid = r.oid DESC, s.rolname LIMIT 1) p ON true
  LEFT JOIN LATERAL (
        SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
         WHERE m.admin_option AND pg_has_role(r.oid, m.member, 'MEMBER')
         ORDER BY g.rolname LIMIT 1) a ON true
 WHERE r.rolname = ANY({names})""")


def names_array(names: Sequence[str]) -> sql.Composed:
    """``ARRAY['a', 'b']::name[]``, each element a quoted literal: for statements sent together."""
    return sql.SQL("ARRAY[{}]::name[]").format(sql.SQL(", ").join(sql.Literal(name) for name in names))


def member_of_query(names: Sequence[str]) -> sql.Composed:
    """The safety check of ``names`` as one statement, to send alone or with others in one message;
    ``member_of_problems`` reads its rows.

    ``pg_has_role(..., 'MEMBER')`` follows every membership, with or without INHERIT or SET, and
    counts the role itself; a superuser is a member of every role, so it is found by its own row.
    """
    return _MEMBER_OF_CHECK.format(
        server_access=names_array(sorted(SERVER_ACCESS_ROLES)), names=names_array(names)
    )


def member_of_problems(
    rows: Sequence[tuple[Any, ...]], names: Sequence[str], target: Target
) -> dict[str, str]:
    """Why each of ``names`` may not be handed out (missing, or special powers through any
    membership), from the rows of ``member_of_query``; the names that may are left out."""
    found = {str(name): (admin_of, power_role, power) for name, admin_of, power_role, power in rows}
    problems: dict[str, str] = {}
    for name in names:
        if name not in found:
            problems[name] = f"role {name} does not exist on target {target.name}"
            continue
        admin_of, power_role, power = found[name]
        if admin_of is not None and power_role is None:
            problems[name] = (
                f"role {name} on target {target.name} holds admin option on {admin_of} (itself or through"
                " a role it is a member of), so its holder could grant that for good; jitgate will not hand"
                " it out"
            )
            continue
        if power_role is None:
            continue
        if power_role == name:
            how = f"has {power}"
        elif power_role in SERVER_ACCESS_ROLES:
            how = f"is a member of {power_role}, which gives {power}"
        else:
            how = f"is a member of {power_role}, which has {power}"
        problems[name] = f"role {name} on target {target.name} {how}; jitgate will not hand it out"
    return problems


def check_member_of(conn: Connection, names: Sequence[str], target: Target) -> None:
    """Refuse the first of ``names`` that does not exist or has special powers (``ProviderError``)."""
    problems = member_of_problems(conn.execute(member_of_query(names)).fetchall(), names, target)
    for name in names:
        if name in problems:
            raise ProviderError(problems[name])


def reassign_to_problem(name: str, target: Target) -> str | None:
    """What is wrong with ``reassign_to`` as a name, without a server; the rest is ``owner_problem``."""
    if problem := role_problem(name, target):
        return problem
    if name.startswith("pg_") or name == "postgres":
        return (
            f"{name} is a built-in role; name a role with no special powers that exists only to own"
            " what logins leave behind"
        )
    return None
