"""Elevating an existing PostgreSQL login: its roles granted for the window, revoked at the end, and
no session left that still holds them.

What PostgreSQL does when a membership is revoked (seen on 15; ``test_postgres_elevation.py`` holds
the evidence): a session of the login that uses the role's privileges through inheritance loses
them at its next statement, even inside an open transaction, and a prepared statement is checked
again at every ``EXECUTE``. But a session that ran ``SET ROLE`` keeps acting as the role until it
resets, and a cursor opened during the window (in a transaction, or ``WITH HOLD`` past it) keeps
returning rows the login may no longer read. Neither shows from outside: ``pg_stat_activity``
names the session user, never the current role, and cursors are private to their session. So
``withdraw`` terminates every session of the login that began before the ``REVOKE`` committed. The
terminate runs after the commit, in the same message (``BEGIN; REVOKE …; COMMIT; SELECT
pg_terminate_backend …``): a session opened in between would see the membership and could still
``SET ROLE``. Sessions are left alone when the login still reaches every role another way (another
grant, or through a role it belongs to): they may hold it anyway. ``SET SESSION AUTHORIZATION``
needs a superuser session, and superuser logins are never elevated.

Memberships granted by someone else stay. On 15 a (role, member) pair has one membership, with the
grantor that made it; a ``GRANT`` of one that exists does nothing and ``REVOKE`` removes it
whoever granted it. So ``withdraw`` revokes only a membership the admin granted: one someone else
granted before the grant (the broker does not withdraw those anyway, see its ``prior``), or just
before jitgate's own ``GRANT`` (which then did nothing), stays. A grant by someone else *during*
the window does nothing on 15 and ends with the elevation. From 16 memberships are kept per
grantor and ``REVOKE`` removes only the admin's own; ``GRANT`` there says ``WITH INHERIT <the
login's own INHERIT attribute>, SET TRUE``, which is what 15 gives, so an elevation means the same
on every version. Admin option is never granted.

Refused (``ElevationRefused``, the grant ends): an account that is the admin role, a superuser, a
login jitgate creates for a grant, or a role others are members of (they would get the roles too,
and their sessions would not be ended); roles that are missing or have special powers through any
membership (``postgres_safety``). Checks and grants run in one transaction.

Ending another login's sessions needs its privileges or ``pg_signal_backend``. An admin with
neither grants itself the login inside the one transaction that terminates (``GRANT login TO
CURRENT_USER; … ; REVOKE login FROM CURRENT_USER``), as PostgreSQL 15 allows ``CREATEROLE``; on
16 that takes admin option on the login.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from jitgate.errors import ElevationRefused, ProviderError
from jitgate.policy.accounts import PLACEHOLDER
from jitgate.policy.model import Role, Target
from jitgate.providers.dsn import LOGIN
from jitgate.providers.postgres_admin import Connection
from jitgate.providers.postgres_revocation import TERMINATE_ROUNDS, TERMINATE_WAIT_MS
from jitgate.providers.postgres_safety import (
    RESERVED_ROLES,
    member_of_problems,
    member_of_query,
    names_array,
    role_problem,
)

log = logging.getLogger(__name__)

MAX_NAME_BYTES = 63
# server_version_num from which a membership has INHERIT and SET options and one row per grantor.
PER_GRANTOR = 160000
TRIES = 3

_ACCOUNT = sql.SQL("""
SELECT a.rolname, a.rolcanlogin, a.rolsuper, a.rolname = current_user, a.rolinherit,
       ARRAY(SELECT DISTINCT m.rolname::text FROM pg_auth_members x JOIN pg_roles m ON m.oid = x.member
              WHERE x.roleid = a.oid AND m.rolname <> current_user ORDER BY 1)
  FROM pg_roles a WHERE a.rolname = {account}""")

_DIRECT = sql.SQL("""
SELECT DISTINCT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
 WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = {account}) AND g.rolname = ANY({items})""")

# The account's memberships of the items, each with whether the admin granted it (from 16 a
# superuser's grants are recorded as made by the bootstrap superuser, oid 10, and its REVOKE removes
# those) and by whom; no row at all when the account is gone.
_MEMBERSHIPS = sql.SQL("""
SELECT g.rolname, m.grantor = u.oid OR (u.rolsuper AND m.grantor = 10 AND {per_grantor}), gr.rolname
  FROM pg_roles a
  CROSS JOIN (SELECT oid, rolsuper FROM pg_roles WHERE rolname = current_user) u
  LEFT JOIN (pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid AND g.rolname = ANY({items}))
         ON m.member = a.oid
  LEFT JOIN pg_roles gr ON gr.oid = m.grantor
 WHERE a.rolname = {account}""")

# Sessions of the account, unless it still reaches every role some other way.
_TERMINATE = sql.SQL("""
SELECT pid, pg_terminate_backend(pid, {wait}) FROM pg_stat_activity
 WHERE usename = {account} AND pid <> pg_backend_pid() AND {pids}
   AND EXISTS (SELECT 1 FROM unnest({items}) AS i(name) LEFT JOIN pg_roles r ON r.rolname = i.name
                WHERE r.oid IS NULL OR NOT pg_has_role(
                      (SELECT oid FROM pg_roles WHERE rolname = {account}), r.oid, 'MEMBER'))""")

T = TypeVar("T")


def find_account(conn: Connection, account: str, target: Target) -> str | None:
    """The login named ``account`` if it exists and can log in; refuses one jitgate must not elevate."""
    refuse_provisioned(account, target)
    if _too_long(account):
        return None
    row = conn.execute(_ACCOUNT.format(account=sql.Literal(account))).fetchone()
    if row is None or not row[1]:
        return None
    refuse_account(row, target)
    return str(row[0])


def held(conn: Connection, account: str, items: Sequence[str]) -> frozenset[str]:
    """Which of ``items`` the account is a direct member of (by anyone's grant)."""
    if _too_long(account):
        return frozenset()
    rows = conn.execute(_DIRECT.format(account=sql.Literal(account), items=names_array(items))).fetchall()
    return frozenset(str(name) for (name,) in rows)


def elevate(conn: Connection, account: str, items: Sequence[str], target: Target) -> dict[str, Any]:
    """Check the account and ``items``, then ``GRANT`` each to it, all in one transaction."""
    refuse_names(account, items, target)
    return _retried(conn, lambda: _elevate(conn, account, items, target))


def _elevate(conn: Connection, account: str, items: Sequence[str], target: Target) -> dict[str, Any]:
    name = sql.Literal(account)
    checks = sql.SQL("BEGIN; {}; {}; {}").format(
        _ACCOUNT.format(account=name),
        member_of_query(items),
        _DIRECT.format(account=name, items=names_array(items)),
    )
    found, safety, direct = _results(conn.execute(checks), 3)
    try:
        if not found or not found[0][1]:
            raise ElevationRefused(f"login {account} does not exist on target {target.name}")
        refuse_account(found[0], target)
        problems = member_of_problems(safety, items, target)
        if problems:
            raise ElevationRefused(problems[next(item for item in items if item in problems)])
    except ElevationRefused:
        conn.execute("ROLLBACK")
        raise
    per_grantor = conn.info.server_version >= PER_GRANTOR
    options = sql.SQL(" WITH INHERIT {}, SET TRUE").format(sql.SQL("TRUE" if found[0][4] else "FALSE"))
    grants = [
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(item), sql.Identifier(account))
        + (options if per_grantor else sql.SQL(""))
        for item in items
    ]
    try:
        conn.execute(sql.SQL("; ").join([*grants, sql.SQL("COMMIT")]))
    except pg_errors.InvalidGrantOperation as exc:
        # A loop (the role is a member of the login): no retry changes that.
        _rollback(conn)
        reason = exc.diag.message_primary or "refused"
        raise ElevationRefused(
            f"postgres target {target.name}: granting to login {account} was refused: {reason}"
        ) from None
    done: dict[str, Any] = {"granted_by": conn.info.user}
    if per_grantor:
        done["membership"] = f"INHERIT {'TRUE' if found[0][4] else 'FALSE'}, SET TRUE"
    already = sorted({str(row[0]) for row in direct})
    if already:
        done["already_member"] = already
    return done


def withdraw(conn: Connection, account: str, items: Sequence[str], target: Target) -> dict[str, Any]:
    """``REVOKE`` what the admin granted of ``items`` and end the account's sessions that may hold
    one; idempotent, and an account that is gone is done."""
    return _retried(conn, lambda: _withdraw(conn, account, items, target))


def _withdraw(conn: Connection, account: str, items: Sequence[str], target: Target) -> dict[str, Any]:
    if _too_long(account):  # it names no login: the cut-down name would be another's
        return {"account_gone": True, "revoked": [], "sessions_ended": 0}
    per_grantor = sql.SQL("true" if conn.info.server_version >= PER_GRANTOR else "false")
    rows = conn.execute(
        _MEMBERSHIPS.format(per_grantor=per_grantor, items=names_array(items), account=sql.Literal(account))
    ).fetchall()
    if not rows:
        log.debug("login %s on target %s is gone; nothing to withdraw", account, target.name)
        return {"account_gone": True, "revoked": [], "sessions_ended": 0}
    ours = sorted({str(item) for item, mine, _ in rows if item is not None and mine})
    others = {
        str(item): str(by or "a dropped role")
        for item, mine, by in rows
        if item is not None and not mine and item not in ours
    }
    revokes = [
        sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(item), sql.Identifier(account)) for item in ours
    ]
    message = [sql.SQL("BEGIN"), *revokes, sql.SQL("COMMIT")] if revokes else []
    ended = _terminate(conn, account, items, target, first=message)
    done: dict[str, Any] = {"revoked": ours, "sessions_ended": ended}
    not_held = sorted(set(items) - set(ours) - set(others))
    if not_held:
        done["not_member"] = not_held
    if others:
        done["granted_by_others"] = others
    return done


def _terminate(
    conn: Connection, account: str, items: Sequence[str], target: Target, *, first: list[sql.Composable]
) -> int:
    """Terminate the account's sessions (unless it still reaches every item), after ``first`` has
    committed; returns how many ended. Raises when some outlive every round."""
    name, wanted = sql.Literal(account), names_array(items)
    which: sql.Composable = sql.SQL("true")  # every session at first, then those that outlived a round
    pids: list[int] = []
    ended = 0
    for _ in range(TERMINATE_ROUNDS):
        terminate = _TERMINATE.format(
            wait=sql.Literal(TERMINATE_WAIT_MS), account=name, pids=which, items=wanted
        )
        try:
            rows = _results(conn.execute(sql.SQL("; ").join([*first, terminate])), 1)[0]
        except pg_errors.InsufficientPrivilege:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                _rollback(conn)  # a REVOKE was refused, not the terminate
                raise
            # The REVOKE (if any) committed; only ending the sessions was refused.
            rows = _terminate_as_member(conn, account, terminate, target)
        first = []
        pids = [int(pid) for pid, gone in rows if not gone]
        ended += sum(1 for _, gone in rows if gone)
        if not pids:
            return ended
        which = sql.SQL("pid = ANY({})").format(sql.Literal(pids))
    raise ProviderError(
        f"postgres target {target.name}: {len(pids)} session(s) of login {account} did not end"
    )


def _terminate_as_member(
    conn: Connection, account: str, terminate: sql.Composable, target: Target
) -> list[tuple[Any, ...]]:
    """Run ``terminate`` with the admin made a member of the account for that one transaction."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = a.oid"
        " AND m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
        " AND (m.grantor = m.member OR %s))"
        " FROM pg_roles a WHERE a.rolname = %s",
        [conn.info.server_version < PER_GRANTOR, account],
    ).fetchone()
    if row is None:
        return []  # gone meanwhile, and its sessions with it
    if row[0]:
        # Revoking the membership afterwards would take away one the admin held before.
        raise ProviderError(
            f"postgres target {target.name}: cannot end the sessions of login {account}: the admin needs"
            " its privileges or pg_signal_backend"
        )
    who = sql.Identifier(account)
    # From 16 a grant's INHERIT follows the admin's own attribute unless said; its privileges are the point.
    inherit = sql.SQL(" WITH INHERIT TRUE" if conn.info.server_version >= PER_GRANTOR else "")
    message = sql.SQL(
        "BEGIN; GRANT {who} TO CURRENT_USER{inherit}; {terminate}; REVOKE {who} FROM CURRENT_USER; COMMIT"
    )
    try:
        return _results(conn.execute(message.format(who=who, inherit=inherit, terminate=terminate)), 1)[0]
    except psycopg.Error:
        _rollback(conn)
        raise


def refuse_names(account: str, items: Sequence[str], target: Target) -> None:
    """What can be refused without a server: a login of jitgate's own, role names it never uses."""
    refuse_provisioned(account, target)
    if _too_long(account):
        raise ElevationRefused(
            f"login {account} on target {target.name} is longer than PostgreSQL's {MAX_NAME_BYTES}-byte"
            " role names; no such login exists"
        )
    for item in items:
        if problem := role_problem(item, target):
            raise ElevationRefused(problem)


def refuse_provisioned(account: str, target: Target) -> None:
    if LOGIN.fullmatch(account):
        raise ElevationRefused(
            f"login {account} on target {target.name} is one jitgate creates for a grant; only a"
            " person's or a job's own login is elevated"
        )


def _too_long(account: str) -> bool:
    # PostgreSQL cuts a longer name to its first 63 bytes, literal or identifier: another login's.
    return len(account.encode()) > MAX_NAME_BYTES


def refuse_account(row: Sequence[Any], target: Target) -> None:
    """Refuse the account described by a row of ``_ACCOUNT``."""
    name, _login, superuser, is_admin, _inherit, members = row
    where = f"login {name} on target {target.name}"
    if is_admin:
        raise ElevationRefused(f"{where} is the admin role jitgate works as; it is never elevated")
    if superuser:
        raise ElevationRefused(f"{where} is a superuser; only ordinary logins are elevated")
    if members:
        shown = ", ".join(members[:3]) + (f" and {len(members) - 3} more" if len(members) > 3 else "")
        raise ElevationRefused(
            f"{where} has members ({shown}), who would be elevated too; it is not elevated"
        )


def existing_login_problems(role: Role, target: Target) -> list[str]:
    """What keeps ``postgres.existing_login`` from naming PostgreSQL roles, found without a server."""
    access = role.postgres
    if access is None or access.existing_login is None:
        return []
    where = f"role {role.name}: postgres.existing_login"
    mapping = access.existing_login
    if isinstance(mapping, str) and PLACEHOLDER in mapping:
        fixed = mapping.replace(PLACEHOLDER, "")
        if len(fixed.encode()) >= MAX_NAME_BYTES:
            return [f"{where} {mapping!r} leaves no room for a name in PostgreSQL's {MAX_NAME_BYTES} bytes"]
        if mapping.startswith("pg_"):
            return [f"{where} {mapping!r}: names starting with pg_ are reserved by PostgreSQL"]
        return []
    names = [mapping] if isinstance(mapping, str) else list(mapping.values())
    return [f"{where} {problem}" for name in names if (problem := login_name_problem(name, target))]


def login_name_problem(name: str, target: Target) -> str | None:
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"{name!r} is longer than PostgreSQL's {MAX_NAME_BYTES}-byte role names"
    if name in RESERVED_ROLES or name.startswith("pg_"):
        return f"{name!r} is reserved by PostgreSQL"
    if LOGIN.fullmatch(name):
        return f"{name!r} is a login jitgate creates for a grant on target {target.name}, not an existing one"
    return None


def _results(cursor: psycopg.Cursor[tuple[Any, ...]], count: int) -> list[list[tuple[Any, ...]]]:
    """The rows of the last ``count`` statements of a message that returned rows."""
    sets: list[list[tuple[Any, ...]]] = []
    while True:
        if cursor.description is not None:
            sets.append(cursor.fetchall())
        if not cursor.nextset():
            break
    if len(sets) < count:
        raise ProviderError(f"expected {count} results from the server, got {len(sets)}")
    return sets[-count:]


def _rollback(conn: Connection) -> None:
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")


def _retried(conn: Connection, work: Callable[[], T]) -> T:
    """Run ``work`` again when a concurrent change of the same membership beat it: two ``GRANT``s
    of a new membership at once fail one with a unique violation, two ``REVOKE``s one with "tuple
    concurrently deleted". The broker works on one account one item at a time, so this comes from
    outside it; the next try sees the other's result."""
    attempt = 1
    while True:
        try:
            return work()
        except (pg_errors.UniqueViolation, pg_errors.InternalError_) as exc:
            concurrent = isinstance(exc, pg_errors.UniqueViolation) or "concurrently" in str(exc)
            _rollback(conn)
            if not concurrent or attempt >= TRIES:
                raise
            attempt += 1
