"""What a revoked PostgreSQL login leaves behind: where it is, whether it may be kept, and removing it.

A login that may create objects can plant code that runs with its owner's privileges (a
``SECURITY DEFINER`` function, a view, a materialized view's query) or with the privileges of
whoever touches a table it hooked (a trigger calling its function). Handing those objects to the
admin at revocation would let the next caller act as the admin. So by default everything the
login owned is dropped, with what depends on it (``DROP OWNED BY ... CASCADE``: a trigger it put on
someone else's table goes with its function), in every database where it owns something or holds
a privilege. Those databases are read from ``pg_shdepend``, the cluster-wide catalog of what refers
to a role, so no database is missed for not being listed in the policy.

A target may instead name a ``reassign_to`` owner, for jobs whose tables should outlive them. That
owner is checked at every revocation (``owner_problem``): it must exist, the admin must have its
privileges, and neither it nor any role it belongs to — by any membership, inheriting or not — may
be a superuser, create roles, bypass row security, replicate, be the admin, or be a predefined
role with server-wide reach. If it fails, the objects are dropped instead and the revocation says
why. What is reassigned is first made unable to run as its new owner: ``SECURITY DEFINER``
routines become ``SECURITY INVOKER``, ``EXECUTE`` is revoked from ``PUBLIC`` on every routine, and
views read with their caller's privileges (``security_invoker``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

Connection = psycopg.Connection[tuple[Any, ...]]

# Predefined roles whose members can read or write everything, reach the server's files or
# programs, or end other sessions: an owner in any of them is no harmless owner.
POWERFUL_PREDEFINED = (
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_signal_backend",
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


def databases_with_traces(conn: Connection, login: str) -> list[str]:
    """Databases where ``login`` owns an object, holds a privilege or has default privileges.

    ``pg_shdepend`` records exactly what would stop ``DROP ROLE``, for every database of the
    cluster; shared objects (``dbid`` 0) are not the login's to clean here.
    """
    rows = conn.execute(
        "SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid"
        " WHERE s.refclassid = 'pg_authid'::regclass"
        " AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = %s) ORDER BY 1",
        [login],
    ).fetchall()
    return [str(name) for (name,) in rows]


def cleanup_statement(conn: Connection, login: str, owner: str | None, *, and_role: bool) -> sql.Composed:
    """One transaction's worth of SQL that leaves nothing of ``login`` in the connection's database.

    With no ``owner`` its objects are dropped. With one, its routines and views are first neutered
    (see the module docstring) and then reassigned; ``DROP OWNED`` then removes what is left: its
    privileges and default privileges.
    """
    who = sql.Identifier(login)
    parts: list[sql.Composable] = []
    if owner is not None:
        parts.extend(_neutering(conn, login))
        parts.append(sql.SQL("REASSIGN OWNED BY {} TO {}").format(who, sql.Identifier(owner)))
    parts.append(sql.SQL("DROP OWNED BY {} CASCADE").format(who))
    if and_role:
        parts.append(sql.SQL("DROP ROLE IF EXISTS {}").format(who))
    return sql.SQL("; ").join(parts)


def _neutering(conn: Connection, login: str) -> Sequence[sql.Composable]:
    """Statements that stop the login's routines and views from running as whoever will own them."""
    routines = conn.execute(
        "SELECT p.oid::regprocedure::text, p.prosecdef, p.prokind FROM pg_proc p"
        " WHERE p.proowner = (SELECT oid FROM pg_roles WHERE rolname = %s) ORDER BY p.oid",
        [login],
    ).fetchall()
    views = conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c"
        " WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = %s) AND c.relkind = 'v'"
        " ORDER BY c.oid",
        [login],
    ).fetchall()
    statements: list[sql.Composable] = []
    for signature, definer, kind in routines:
        # regprocedure and regclass print names already quoted as the server needs them.
        name = sql.SQL(str(signature))
        keyword = sql.SQL("PROCEDURE" if kind == "p" else "FUNCTION")
        if definer:
            statements.append(sql.SQL("ALTER {} {} SECURITY INVOKER").format(keyword, name))
        statements.append(sql.SQL("REVOKE EXECUTE ON ROUTINE {} FROM PUBLIC").format(name))
    for (view,) in views:
        statements.append(sql.SQL("ALTER VIEW {} SET (security_invoker = true)").format(sql.SQL(str(view))))
    return statements
