"""Revoking a MariaDB user: lock it, end its connections, drop what it defined, drop the user.

MariaDB has no object owners, but routines, views, events and triggers carry a DEFINER and, with
``SQL SECURITY DEFINER`` (the default), run with the definer's privileges. Dropping the user leaves
them in place, each waiting for an account of the same name to appear and then running with that
account's rights, and a dead definer's trigger fails every write to its table. So every object
whose DEFINER is the user is dropped before the user is. They are found in ``information_schema``,
which shows the admin what it holds privileges on: the admin needs, in every schema where logins
may define objects, the privileges to see and drop them (``SHOW VIEW``, ``TRIGGER``, ``EVENT``,
``ALTER ROUTINE``, ``DROP``). The sweep runs on every attempt, also when the user is already gone,
so a retry after a failure half-way finishes it.
"""

from __future__ import annotations

from pymysql.cursors import Cursor

# Triggers go first: a trigger using a view or routine of the user's would fail while it is dropped.
_DEFINED = (
    "SELECT 'TRIGGER', TRIGGER_SCHEMA, TRIGGER_NAME FROM information_schema.TRIGGERS WHERE DEFINER = %s",
    "SELECT 'VIEW', TABLE_SCHEMA, TABLE_NAME FROM information_schema.VIEWS WHERE DEFINER = %s",
    "SELECT ROUTINE_TYPE, ROUTINE_SCHEMA, ROUTINE_NAME FROM information_schema.ROUTINES"
    " WHERE DEFINER = %s ORDER BY ROUTINE_TYPE DESC, ROUTINE_NAME",
    "SELECT 'EVENT', EVENT_SCHEMA, EVENT_NAME FROM information_schema.EVENTS WHERE DEFINER = %s",
)
_KEYWORDS = frozenset({"TRIGGER", "VIEW", "PROCEDURE", "FUNCTION", "PACKAGE", "PACKAGE BODY", "EVENT"})


def quoted(name: str) -> str:
    """A backtick-quoted identifier; the user chose these names, so any character may be in them."""
    return "`" + name.replace("`", "``") + "`"


def drop_defined(cur: Cursor, login: str, host: str) -> list[str]:
    """Drop every trigger, view, routine and event whose DEFINER is ``login@host``; name each one."""
    definer = f"{login}@{host}"
    dropped: list[str] = []
    for query in _DEFINED:
        cur.execute(query, (definer,))
        for keyword, schema, name in cur.fetchall():
            kind = str(keyword).upper()
            if kind not in _KEYWORDS:
                continue
            cur.execute(f"DROP {kind} IF EXISTS {quoted(str(schema))}.{quoted(str(name))}")
            dropped.append(f"{kind.lower()} {schema}.{name}")
    return dropped


def revoke_user(cur: Cursor, login: str, host: str) -> list[str]:
    """The whole revocation on one admin connection; returns what was dropped besides the user.

    Locked first, so no new connection starts; its connections killed, so none defines more while
    the sweep runs; killed once more after the drop, for one that authenticated in between.
    """
    cur.execute("ALTER USER IF EXISTS %s@%s ACCOUNT LOCK", (login, host))
    cur.execute("KILL CONNECTION USER %s", (login,))
    dropped = drop_defined(cur, login, host)
    cur.execute("DROP USER IF EXISTS %s@%s", (login, host))
    cur.execute("KILL CONNECTION USER %s", (login,))
    return dropped
