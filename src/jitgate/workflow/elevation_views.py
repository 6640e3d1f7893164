"""What each grant's elevations changed at their targets, for the grant views of the API, the
command line and the console.

Per target: the account, the credential row's state (``elevating`` until applied, ``issued``,
``revoked``), each item (role, group) with its state, whether the account held it before, and what
became of it at the end; and the queue's work still pending on it (to apply or to take back, with
its attempts and last error). A page of grants costs one statement, however many it holds.
Plain JSON-ready dicts, no secrets in them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from jitgate.store import elevations
from jitgate.workflow.elevation import ELEVATING

Elevations = dict[str, list[dict[str, Any]]]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def elevations_by_grant(conn: Connection, grant_ids: Sequence[str]) -> Elevations:
    """Each grant's elevations, one per target in the order they were planned; grants without any
    are left out."""
    by_credential: dict[int, dict[str, Any]] = {}
    grant_of: dict[int, str] = {}
    for row in elevations.detail_of_grants(conn, grant_ids):
        entry = by_credential.get(row["credential_id"])
        if entry is None:
            pending = None
            if row["work_action"] is not None:
                pending = {
                    "action": row["work_action"],
                    "attempts": row["work_attempts"],
                    "last_error": row["work_last_error"],
                    "next_attempt_at": _iso(row["work_next_attempt_at"]),
                }
            entry = {
                "target": row["target"],
                "kind": row["kind"],
                "handle": row["handle"],
                "account": row["account"],
                "state": row["credential_state"],
                "revoked_at": _iso(row["revoked_at"]),
                "items": [],
                "pending": pending,
            }
            by_credential[row["credential_id"]] = entry
            grant_of[row["credential_id"]] = row["grant_id"]
        entry["items"].append(
            {
                "item": row["item"],
                "state": row["state"],
                "prior": row["prior"],
                "outcome": row["outcome"],
                "released_at": _iso(row["released_at"]),
            }
        )
    found: Elevations = {}
    for credential_id, entry in by_credential.items():
        found.setdefault(grant_of[credential_id], []).append(entry)
    return found


def attach(view: dict[str, Any], found: Elevations) -> dict[str, Any]:
    """``view`` (a grant's JSON) with its ``elevations`` and ``elevations_pending``: how many of its
    targets' elevations are still to be applied."""
    shown = found.get(view["id"], [])
    view["elevations"] = shown
    view["elevations_pending"] = sum(entry["state"] == ELEVATING for entry in shown)
    return view


def attach_all(conn: Connection, views: Sequence[dict[str, Any]]) -> None:
    """``attach`` to each of a page of grant views, in one statement."""
    found = elevations_by_grant(conn, [view["id"] for view in views])
    for view in views:
        attach(view, found)
