"""Audit records parked while the audit log cannot be extended, and their way back into the chain.

Taking access away must never wait for a repair of the audit log: a revocation or an expiry that
finds the log broken (``AuditIntegrityError``) still commits, and its records are parked here in
the same transaction, so none is lost. Once the log can be extended again (repaired by an
operator with ``jitgate audit repair``, or found intact again) the parked records are appended in
the order they were parked, unchanged, after one ``audit.unparked`` record that says how many were
parked, when and why. A parked row that can no longer be read is not dropped silently: the
``audit.unparked`` record names it as lost.

The backlog is an ordinary table, writable by whoever administers the database, and what is in it
gets appended and signed by the broker. So each parked row carries a seal keyed by the audit key
over its record, when and why it was parked: a row planted or edited in the database has no valid
seal and is named as lost instead of becoming signed history.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jitgate.audit.canonical import iso_utc
from jitgate.audit.chain import AuditLog, Event, read_head
from jitgate.store.tables import audit_backlog

UNPARKED = "audit.unparked"
SEAL = "seal"
_WHY_LIMIT = 500


def park(conn: Connection, audit: AuditLog, events: Sequence[Event], *, why: str, now: datetime) -> None:
    """Keep ``events`` in the transaction open on ``conn``, to be appended once the log is repaired."""
    if not events:
        return
    why = why[:_WHY_LIMIT]
    rows = []
    for event in events:
        fields = _fields(event)
        rows.append({"parked_at": now, "why": why, "event": {**fields, SEAL: _seal(audit, now, why, fields)}})
    conn.execute(audit_backlog.insert(), rows)


def _seal(audit: AuditLog, parked_at: datetime, why: str, fields: dict[str, Any]) -> str:
    sealed = {"parked_at": iso_utc(parked_at), "why": why, "event": fields}
    text = json.dumps(sealed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return audit.parked_seal(text.encode("utf-8", "surrogatepass"))


def count(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(audit_backlog)).scalar_one())


def unpark(conn: Connection, audit: AuditLog, *, now: datetime, actor: str) -> int:
    """Append every parked record to the chain in order, behind an ``audit.unparked`` record.

    Returns how many were parked (0: nothing to do). Raises ``AuditIntegrityError``, leaving them
    parked, while the log still cannot be extended. The head is locked first, so two brokers never
    append the same parked records twice.
    """
    read_head(conn, for_update=True)
    rows = conn.execute(sa.select(audit_backlog).order_by(audit_backlog.c.id)).all()
    if not rows:
        return 0
    events: list[Event] = []
    lost: list[dict[str, Any]] = []
    for row in rows:
        try:
            fields = dict(row.event)
            seal = fields.pop(SEAL, None)
            if not isinstance(seal, str) or not hmac.compare_digest(
                seal, _seal(audit, row.parked_at, row.why, fields)
            ):
                raise ValueError("not sealed by this audit key: written or edited outside the broker")
            events.append(_event(fields))
        except (KeyError, TypeError, ValueError) as exc:
            lost.append({"backlog_id": int(row.id), "problem": f"{type(exc).__name__}: {exc}"[:200]})
    note = Event.checked(
        at=now,
        actor=actor,
        action=UNPARKED,
        details={
            "records": len(events),
            "lost": lost,
            "parked_from": iso_utc(rows[0].parked_at),
            "parked_until": iso_utc(rows[-1].parked_at),
            "why": sorted({row.why for row in rows}),
        },
    )
    audit.append_many(conn, [note, *events])
    conn.execute(audit_backlog.delete().where(audit_backlog.c.id <= rows[-1].id))
    return len(rows)


def _fields(event: Event) -> dict[str, Any]:
    return {
        "at": iso_utc(event.at),
        "actor": event.actor,
        "action": event.action,
        "request_id": event.request_id,
        "grant_id": event.grant_id,
        "role": event.role,
        "target": event.target,
        "details": event.details,
    }


def _event(fields: Any) -> Event:
    """The parked record as it was checked when parked; checked again, since the table is unsigned."""
    return Event.checked(
        at=datetime.fromisoformat(fields["at"]),
        actor=fields["actor"],
        action=fields["action"],
        request_id=fields["request_id"],
        grant_id=fields["grant_id"],
        role=fields["role"],
        target=fields["target"],
        details=fields["details"],
    )
