"""Elevating an existing MariaDB account with MariaDB roles for a grant's window, and taking it back.

Found on MariaDB 10.11, and acted on here:

* ``REVOKE role FROM account`` leaves every session that has the role active untouched: one that
  ran ``SET ROLE role`` and one that got it as its default role at login keep the role's privileges
  until they end (a session of a dropped account too). So ``withdraw`` ends the sessions: after the
  ``REVOKE``, no new session can activate the role (``SET ROLE`` fails, a default role naming it is
  skipped with a warning), so one ``KILL CONNECTION USER`` after it leaves none holding it.
* ``KILL CONNECTION USER 'name'`` ends every session of that user *name*: given a host, MariaDB
  compares the client's address, not the account's host pattern, and ``PROCESSLIST`` does not say
  which account a session logged in as (and shows other users' sessions only with ``PROCESS``). So
  a session of another account with the same name and another host ends too: the safe side. The
  kill runs on every withdrawal, also when the role was revoked already (a retry after a failure
  in between) or the account is gone.
* A session starts with its account's default role active, or none; an account has one default
  role. Setting another account's default role needs ``UPDATE`` on the ``mysql`` schema, which is
  control of every account, so by default jitgate leaves it: the person runs ``SET ROLE role``
  after connecting (``mysql --init-command='SET ROLE role'``), and the outcome lists the roles that
  need it (``needs_set_role``). With the target option ``set_default_role: true`` (and that
  privilege) an account without a default role gets the first role granted as its default; one
  that has a default role keeps it. ``withdraw`` clears a default role that names a role it
  withdraws (the server says so; the broker keeps no state): left in place, it would grant nothing
  now but come back to life whenever the role is granted again. Failing to clear it is logged and
  reported, not retried: the sessions have ended and the role is gone.

Accounts refused for good (``ElevationRefused``): the admin's own user name (ending its sessions
would end the broker's), an account with ``SUPER`` (``ALL`` on ``*.*`` includes it) or with
``GRANT OPTION`` anywhere (with the role active it could hand the role's privileges on for good;
MariaDB activates one role at a time, so a grant option reaching the account through another role
cannot meet the elevated role's privileges), and jitgate's own logins. A role is not an account.

Roles: the admin must hold each ``WITH ADMIN OPTION`` to grant it. While a role is the admin's
current role, ``SHOW GRANTS FOR`` it lists its grants and those of the roles it holds, with no read
access to ``mysql.global_priv``, where the password hashes are; so the admin sets the role on its
own connection for that one statement and restores its own. The rest is read from columns of
``mysql.user`` and from ``mysql.roles_mapping``, ``mysql.db``, ``mysql.tables_priv`` and
``mysql.procs_priv``, none of which holds a password hash (``docs/providers.md`` has the grants).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pymysql
from pymysql.cursors import Cursor

from jitgate.errors import ElevationRefused, ProviderError
from jitgate.policy.model import Target
from jitgate.providers.dsn import LOGIN
from jitgate.providers.mariadb_accounts import Account
from jitgate.providers.mariadb_admin import Settings, reason_of, reported
from jitgate.providers.mariadb_revocation import quoted
from jitgate.providers.mariadb_safety import role_grants_problem

log = logging.getLogger(__name__)

INVALID_ROLE = 1959
NO_SUCH_GRANT = 1962
NO_SUCH_USER = 1133
READ_DENIED = frozenset({1142, 1143})
ACCESS_DENIED = frozenset({1044, 1045, 1142, 1227, 1698})
READS = (
    "SELECT on mysql.roles_mapping, mysql.db, mysql.tables_priv, mysql.procs_priv and columns of mysql.user"
)

_ACCOUNT = (
    "SELECT User, Host, is_role, default_role, Super_priv, Grant_priv FROM mysql.user"
    " WHERE User = %s AND Host = %s"
)
_GRANT_OPTION = (
    "SELECT CONCAT(Db, '.*') FROM mysql.db WHERE User = %s AND Host = %s AND Grant_priv = 'Y'"
    " UNION ALL SELECT CONCAT(Db, '.', Table_name) FROM mysql.tables_priv"
    " WHERE User = %s AND Host = %s AND FIND_IN_SET('Grant', Table_priv)"
    " UNION ALL SELECT CONCAT(Db, '.', Routine_name) FROM mysql.procs_priv"
    " WHERE User = %s AND Host = %s AND FIND_IN_SET('Grant', Proc_priv) LIMIT 1"
)
_ROLES = "SELECT Role FROM mysql.roles_mapping WHERE User = %s AND Host = %s"


@dataclass(frozen=True, slots=True)
class _Row:
    account: Account
    is_role: bool
    default_role: str | None
    superuser: bool
    grant_option: bool


def find(cur: Cursor, account: Account, settings: Settings, target: Target) -> str | None:
    """``'user'@'host'`` if the account exists and may be elevated, None if it does not exist."""
    row = _elevatable(cur, account, settings, target)
    return None if row is None else str(row.account)


def held(cur: Cursor, account: Account, settings: Settings, target: Target) -> frozenset[str]:
    """The roles granted to the account itself (not those reaching it through another role)."""
    with _reading(target, "reading the account's roles", settings):
        cur.execute(_ROLES, account.params)
        return frozenset(str(row[0]) for row in cur.fetchall())


def elevate(
    cur: Cursor, account: Account, roles: tuple[str, ...], settings: Settings, target: Target
) -> dict[str, Any]:
    """Check the account and every role, then grant the roles (and the default role, if asked)."""
    row = _elevatable(cur, account, settings, target)
    if row is None:
        raise ElevationRefused(f"account {account} does not exist on target {target.name}")
    for name in roles:
        _check_role(cur, name, settings, target)
    for name in roles:
        _grant(cur, name, account, settings, target)
    before = after = row.default_role
    if settings.set_default_role and before is None and roles:
        _set_default_role(cur, roles[0], account, settings, target)
        after = roles[0]
    log.info("granted role(s) %s to %s on target %s", ", ".join(roles), account, target.name)
    return {
        "default_role": {"before": before, "after": after},
        "needs_set_role": [name for name in roles if name != after],
    }


def withdraw(
    cur: Cursor, account: Account, roles: tuple[str, ...], settings: Settings, target: Target
) -> dict[str, Any]:
    """Revoke the roles, end the account's sessions, clear a default role naming one of them."""
    if account.user == settings.user:
        raise ProviderError(
            f"mariadb target {target.name}: {account} has the admin's user name; ending its sessions"
            " would end the broker's"
        )
    row = _account(cur, account, settings, target)
    have = held(cur, account, settings, target) if row is not None else frozenset()
    revoked: list[str] = []
    for name in roles:
        if name in have and _revoke(cur, name, account, settings, target):
            revoked.append(name)
    with reported(target, f"ending the sessions of {account.user}", settings):
        cur.execute("KILL CONNECTION USER %s", (account.user,))
        ended = int(cur.rowcount or 0)
    outcome: dict[str, Any] = {
        "revoked": revoked,
        "not_held": [name for name in roles if name not in revoked],
        "sessions_ended": ended,
    }
    if row is not None and row.default_role in roles:
        outcome.update(_clear_default_role(cur, row.default_role, account, settings, target))
    log.info(
        "withdrew role(s) %s from %s on target %s, ending %d session(s)",
        ", ".join(roles),
        account,
        target.name,
        ended,
    )
    return outcome


def _elevatable(cur: Cursor, account: Account, settings: Settings, target: Target) -> _Row | None:
    """The account's row, None if there is none (or it is a role); ``ElevationRefused`` if it is
    one jitgate does not elevate."""
    row = _account(cur, account, settings, target)
    if row is None or row.is_role:
        return None
    where = f"account {row.account} on target {target.name}"
    if row.account.user == settings.user:
        raise ElevationRefused(f"{where} is the admin's own; jitgate does not elevate it")
    if LOGIN.fullmatch(row.account.user):
        raise ElevationRefused(f"{where} is a login jitgate provisions; it is not elevated")
    if row.superuser:
        raise ElevationRefused(f"{where} has SUPER; jitgate does not elevate an administrator")
    granting = "global" if row.grant_option else _grant_option_at(cur, row.account, settings, target)
    if granting:
        raise ElevationRefused(
            f"{where} holds GRANT OPTION ({granting}): with a role active it could pass the role's "
            "privileges on for good"
        )
    return row


def _account(cur: Cursor, account: Account, settings: Settings, target: Target) -> _Row | None:
    with _reading(target, f"looking up account {account}", settings):
        cur.execute(_ACCOUNT, account.params)
        found = cur.fetchone()
    if found is None:
        return None
    user, host, is_role, default_role, super_priv, grant_priv = (str(value or "") for value in found)
    return _Row(
        account=Account(user, host),
        is_role=is_role == "Y",
        default_role=default_role or None,
        superuser=super_priv == "Y",
        grant_option=grant_priv == "Y",
    )


def _grant_option_at(cur: Cursor, account: Account, settings: Settings, target: Target) -> str | None:
    with _reading(target, f"reading the privileges of {account}", settings):
        cur.execute(_GRANT_OPTION, account.params * 3)
        found = cur.fetchone()
    return None if found is None else f"on {found[0]}"


def _check_role(cur: Cursor, name: str, settings: Settings, target: Target) -> None:
    """Refuse a role that is missing, that the admin does not hold, or that holds too much."""
    where = f"role {name} on target {target.name}"
    with reported(target, f"inspecting role {name}", settings):
        cur.execute("SELECT CURRENT_ROLE()")
        current = cur.fetchone()
        own = str(current[0]) if current and current[0] else None
        try:
            cur.execute(f"SET ROLE {quoted(name)}")
        except pymysql.MySQLError as exc:
            if exc.args and exc.args[0] == INVALID_ROLE:
                raise ElevationRefused(_missing_role(cur, name, settings, target)) from None
            raise
        try:
            cur.execute(f"SHOW GRANTS FOR {quoted(name)}")
            lines = [str(line) for (line,) in cur.fetchall()]
        finally:
            cur.execute(f"SET ROLE {quoted(own)}" if own else "SET ROLE NONE")
    if problem := role_grants_problem(name, lines):
        raise ElevationRefused(f"{where}: {problem}; jitgate will not hand it out")


def _missing_role(cur: Cursor, name: str, settings: Settings, target: Target) -> str:
    with _reading(target, f"looking up role {name}", settings):
        cur.execute("SELECT 1 FROM mysql.user WHERE User = %s AND Host = '' AND is_role = 'Y'", (name,))
        exists = cur.fetchone() is not None
    if not exists:
        return f"role {name} does not exist on target {target.name}"
    return (
        f"mariadb target {target.name}: the admin does not hold role {name} (it needs it WITH ADMIN OPTION)"
    )


def _grant(cur: Cursor, name: str, account: Account, settings: Settings, target: Target) -> None:
    try:
        cur.execute(f"GRANT {quoted(name)} TO %s@%s", account.params)
    except pymysql.MySQLError as exc:
        code = exc.args[0] if exc.args else None
        if code == INVALID_ROLE:
            raise ElevationRefused(f"role {name} does not exist on target {target.name}") from None
        if code == NO_SUCH_USER:
            raise ElevationRefused(f"account {account} does not exist on target {target.name}") from None
        if code in ACCESS_DENIED:
            raise ElevationRefused(
                f"mariadb target {target.name}: the admin may not grant role {name} (it needs it WITH ADMIN"
                " OPTION)"
            ) from None
        reason = reason_of(exc, settings.secrets)
        raise ProviderError(f"mariadb target {target.name}: granting role {name} failed: {reason}") from None


def _revoke(cur: Cursor, name: str, account: Account, settings: Settings, target: Target) -> bool:
    """Revoke ``name``; False when it was not granted (any more)."""
    try:
        cur.execute(f"REVOKE {quoted(name)} FROM %s@%s", account.params)
    except pymysql.MySQLError as exc:
        if exc.args and exc.args[0] in (NO_SUCH_GRANT, INVALID_ROLE):
            return False
        reason = reason_of(exc, settings.secrets)
        raise ProviderError(f"mariadb target {target.name}: revoking role {name} failed: {reason}") from None
    return True


def _set_default_role(cur: Cursor, name: str, account: Account, settings: Settings, target: Target) -> None:
    try:
        cur.execute(f"SET DEFAULT ROLE {quoted(name)} FOR %s@%s", account.params)
    except pymysql.MySQLError as exc:
        if exc.args and exc.args[0] in ACCESS_DENIED:
            raise ElevationRefused(
                f"mariadb target {target.name}: the admin may not set default roles (set_default_role"
                " needs UPDATE on mysql.*)"
            ) from None
        reason = reason_of(exc, settings.secrets)
        raise ProviderError(
            f"mariadb target {target.name}: setting the default role of {account} failed: {reason}"
        ) from None


def _clear_default_role(
    cur: Cursor, name: str, account: Account, settings: Settings, target: Target
) -> dict[str, Any]:
    if not settings.set_default_role:
        return {"default_role_left": name}
    try:
        cur.execute("SET DEFAULT ROLE NONE FOR %s@%s", account.params)
    except pymysql.MySQLError as exc:
        reason = reason_of(exc, settings.secrets)
        log.warning(
            "could not clear the default role %s of %s on target %s: %s", name, account, target.name, reason
        )
        return {"default_role_left": name, "default_role_error": reason}
    return {"default_role_cleared": name}


@contextmanager
def _reading(target: Target, action: str, settings: Settings) -> Iterator[None]:
    """Like ``reported``, naming what the admin must be allowed to read when it may not."""
    try:
        yield
    except pymysql.MySQLError as exc:
        if exc.args and exc.args[0] in READ_DENIED:
            raise ProviderError(
                f"mariadb target {target.name}: {action} failed: elevating existing accounts needs {READS}"
            ) from None
        reason = reason_of(exc, settings.secrets)
        raise ProviderError(f"mariadb target {target.name}: {action} failed: {reason}") from None
