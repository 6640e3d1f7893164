"""Revoking a PostgreSQL login: ending its sessions, and leaving nothing it made able to run as anyone.

A login that may create objects can plant code that runs with its owner's privileges (a
``SECURITY DEFINER`` function, a view, a materialized view's query) or with the privileges of
whoever touches a table it hooked (a trigger calling its function). Handing those objects to the
admin at revocation would let the next caller act as the admin. So by default everything the
login owned is dropped, with what depends on it (``DROP OWNED BY ... CASCADE``: a trigger it put on
someone else's table goes with its function), in every database where it owns something or holds
a privilege. Those databases are read from ``pg_shdepend``, the cluster-wide catalog of what refers
to a role, so no database is missed for not being listed in the policy; the provider reads it only
when ``DROP ROLE`` reports objects elsewhere, so the common case costs no extra round trip.

A target may instead name a ``reassign_to`` owner, for jobs whose tables should outlive them. It
is checked at every revocation (``postgres_safety.owner_problem``); if it fails, the objects are
dropped instead and the outcome says why. Data is handed on, code never is: the login's routines
are dropped first, with whatever uses them (``CASCADE``: an index expression, a trigger, a column
default), since a routine the owner's maintenance runs (``ANALYZE`` evaluating an index expression,
autovacuum) would run with the new owner's privileges whatever its ``SECURITY`` setting. Views the
login made read with their caller's privileges (``security_invoker``).
Rules on its tables and views are dropped: a rule's action always runs with the privileges of the
relation's owner, which cannot be turned off, so a rule the login could not use to write the
owner's tables (``ON INSERT ... DO ALSO DELETE FROM app.orders``) would start working for anyone
who may write the login's table as soon as the table became the owner's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from psycopg import errors as pg_errors
from psycopg import sql

from jitgate.errors import ProviderError
from jitgate.policy.model import Target
from jitgate.providers.postgres_admin import Connection, Settings, reason_of
from jitgate.providers.postgres_safety import owner_problem

log = logging.getLogger(__name__)

TERMINATE_WAIT_MS = 5000
TERMINATE_ROUNDS = 3


def terminate_sessions(conn: Connection, login: str, target: Target) -> None:
    left = 0
    for _ in range(TERMINATE_ROUNDS):
        conn.execute(
            "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity"
            " WHERE usename = %s AND pid <> pg_backend_pid()",
            [TERMINATE_WAIT_MS, login],
        )
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()", [login]
        ).fetchone()
        left = int(row[0]) if row else 0
        if not left:
            return
    raise ProviderError(f"postgres target {target.name}: {left} session(s) of login {login} did not end")


def objects_outcome(
    conn: Connection, login: str, settings: Settings, target: Target
) -> tuple[dict[str, Any], str | None]:
    """Drop the login's objects, or reassign them to ``reassign_to`` if it is harmless right now."""
    owner = settings.reassign_to
    if owner is None:
        return {"objects": "dropped"}, None
    problem = owner_problem(conn, owner)
    if problem is None:
        return {"objects": "reassigned", "reassign_to": owner}, owner
    log.warning(
        "target %s: not reassigning what login %s created: %s; dropping it", target.name, login, problem
    )
    return {"objects": "dropped", "reassign_to": owner, "reassign_refused": problem}, None


def clean(
    conn: Connection,
    login: str,
    owner: str | None,
    settings: Settings,
    target: Target,
    *,
    and_role: bool = False,
) -> None:
    """Leave nothing of ``login`` in the connection's database (and DROP ROLE), in one transaction."""
    try:
        conn.execute(cleanup_statement(conn, login, owner, and_role=and_role))
    except pg_errors.InsufficientPrivilege as exc:
        reason = reason_of(exc, settings.secrets)
        if "drop role" in reason:
            raise
        raise ProviderError(
            f"postgres target {target.name}: cleaning up login {login} in database {conn.info.dbname} was"
            f" refused: {reason} (the admin needs the privileges of whoever granted the login rights,"
            " e.g. the object owner)"
        ) from None


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

    With no ``owner`` its objects are dropped. With one, its routines are dropped and its views
    neutered (see the module docstring), and the rest is reassigned; ``DROP OWNED`` then removes
    what is left: its privileges and default privileges.
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
    """Statements that leave nothing of the login's able to run as whoever will own its objects."""
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
    rules = conn.execute(
        "SELECT r.rulename, c.oid::regclass::text FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class"
        " WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = %s) AND r.rulename <> '_RETURN'"
        " ORDER BY r.oid",
        [login],
    ).fetchall()
    statements: list[sql.Composable] = []
    for rule, relation in rules:
        statements.append(
            sql.SQL("DROP RULE {} ON {}").format(sql.Identifier(str(rule)), sql.SQL(str(relation)))
        )
    for signature, _definer, kind in routines:
        # regprocedure and regclass print names already quoted as the server needs them.
        keyword = sql.SQL("PROCEDURE" if kind == "p" else "FUNCTION")
        statements.append(sql.SQL("DROP {} IF EXISTS {} CASCADE").format(keyword, sql.SQL(str(signature))))
    for (view,) in views:
        statements.append(sql.SQL("ALTER VIEW {} SET (security_invoker = true)").format(sql.SQL(str(view))))
    return statements
