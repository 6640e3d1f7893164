"""What a grant's elevation changed at its target, in words, for ``jitgate grants`` and the console.

It reads the entries of a grant view's ``elevations`` (plain JSON: target, kind, account, items
with their state and outcome, the queue's pending work), so that the command line, which loads
nothing of the server, and the console say it the same way; each passes its own way of writing a
time. The words are data from the policy and the targets: each output still makes them inert.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Entry = Mapping[str, Any]
When = Callable[[str | None], str]
_STATES = {"planned": "planned", "applying": "being applied", "held": "held"}
_WORK = {"elevate": "to be applied", "withdraw": "to be taken back"}


def change(kind: str, item: str, account: str) -> str:
    """``role orders_admin granted to login alice``, ``joined cn=… as uid=alice,…``."""
    if kind == "postgres":
        return f"role {item} granted to login {account}"
    if kind == "mariadb":
        return f"role {item} granted to account {account}"
    if kind == "ldap":
        return f"joined {item} as {account}"
    return f"{item} given to {account}"


def item_state(item: Entry, when: When) -> str:
    """``held``, ``withdrawn at …``, ``kept: held before the grant``, ``never applied``, …"""
    state = str(item.get("state"))
    if state != "released":
        return _STATES.get(state, state)
    outcome = item.get("outcome")
    if outcome == "withdrawn":
        return f"withdrawn at {when(item.get('released_at'))}"
    return str(outcome) if outcome else "released"


def pending_line(entry: Entry, when: When) -> str | None:
    """The queue's work still pending on the elevation, with how it went so far; None if none."""
    work = entry.get("pending")
    if not work:
        return None
    what = _WORK.get(str(work.get("action")), str(work.get("action")))
    attempts = int(work.get("attempts") or 0)
    if not attempts:
        return f"{entry['target']}: pending: {what}"
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return (
        f"{entry['target']}: pending: {what}, {tries} failed, next at {when(work.get('next_attempt_at'))}, "
        f"last error: {work.get('last_error') or '-'}"
    )


def lines(entry: Entry, when: When) -> list[str]:
    """One line per item (``orders-db: role orders_admin granted to login alice (held)``), then
    the pending work, if any."""
    out = [
        f"{entry['target']}: {change(str(entry['kind']), str(item['item']), str(entry['account']))}"
        f" ({item_state(item, when)})"
        for item in entry.get("items", ())
    ]
    pending = pending_line(entry, when)
    if pending is not None:
        out.append(pending)
    return out


def grant_lines(grant: Entry, when: When) -> list[str]:
    """Every line of every elevation of a grant view; none for a grant that elevates nothing (or
    from a broker too old to say)."""
    return [line for entry in grant.get("elevations") or () for line in lines(entry, when)]
