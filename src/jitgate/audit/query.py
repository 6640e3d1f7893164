"""Reading the audit log back: filtered pages for people, and a streaming JSON-lines export.

Filters use the denormalized columns (indexed); what is returned comes from the hashed body, the
record's only authoritative form. Reading does not verify: ``verify.verify`` does that.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jitgate.audit.canonical import canonical_json, iso_utc
from jitgate.domain.identity import Identity
from jitgate.store.tables import audit_events

MAX_LIMIT = 10_000
AUDITORS = "auditors"
"""The group whose members read everyone's records, as admins do."""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One record as it was hashed, plus its link (``prev_hash``) and its own ``hash``."""

    seq: int
    at: datetime
    actor: str
    action: str
    request_id: str | None
    grant_id: str | None
    role: str | None
    target: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON data: the body's fields (``prev`` included) and ``hash``."""
        return {
            "seq": self.seq,
            "at": iso_utc(self.at),
            "actor": self.actor,
            "action": self.action,
            "request_id": self.request_id,
            "grant_id": self.grant_id,
            "role": self.role,
            "target": self.target,
            "details": self.details,
            "prev": self.prev_hash,
            "hash": self.hash,
        }


def reads_everyone(identity: Identity) -> bool:
    """Whether ``identity`` reads every record (admins, ``auditors``) or only their own acts."""
    return identity.admin or AUDITORS in identity.groups


def visible_actor(identity: Identity, actor: str | None) -> str | None:
    """The actor filter a query by ``identity`` runs with: as asked if they read everyone's
    records, otherwise their own name, whatever they asked for."""
    return actor if reads_everyone(identity) else identity.name


def actions_with_prefix(conn: Connection, prefix: str) -> list[str]:
    """The distinct actions recorded that start with ``prefix`` (a noun and its dot, ``grant.``).

    One index seek each (the next action after the last found), however many records they have.
    The range ``>= 'grant.'`` and ``< 'grant/'`` holds exactly the prefix's actions: actions are
    lowercase ASCII (``chain.py``), and binary, C and ICU collations all order ``.`` before ``/``.
    """
    column = audit_events.c.action
    upper = prefix[:-1] + "/"
    found: list[str] = []
    while True:
        after = column > found[-1] if found else column >= prefix
        name = conn.execute(sa.select(sa.func.min(column)).where(after, column < upper)).scalar()
        if name is None:
            return found
        found.append(name)


def query(
    conn: Connection,
    *,
    actor: str | None = None,
    role: str | None = None,
    action: str | None = None,
    request_id: str | None = None,
    grant_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    after_seq: int | None = None,
    before_seq: int | None = None,
    newest_first: bool = False,
) -> list[AuditEvent]:
    """Records matching every given filter, at most ``limit`` of them.

    ``action`` ending with a dot is every action of that noun (``grant.``). ``since`` is
    inclusive, ``until`` exclusive. Page forwards with ``after_seq`` (the last seq seen) and
    backwards with ``before_seq`` together with ``newest_first=True``.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    conditions: list[sa.ColumnElement[bool]] = []
    for column, value in (
        (audit_events.c.actor, actor),
        (audit_events.c.role, role),
        (audit_events.c.request_id, request_id),
        (audit_events.c.grant_id, grant_id),
    ):
        if value is not None:
            conditions.append(column == value)
    if since is not None:
        conditions.append(audit_events.c.at >= since)
    if until is not None:
        conditions.append(audit_events.c.at < until)
    if after_seq is not None:
        conditions.append(audit_events.c.seq > after_seq)
    if before_seq is not None:
        conditions.append(audit_events.c.seq < before_seq)
    if action is None or not action.endswith("."):
        if action is not None:
            conditions.append(audit_events.c.action == action)
        return _page(conn, conditions, limit, newest_first)
    # A range of actions cannot be read from the (action, seq) index in seq order (the database
    # would sort every record of the noun): read each action's page in order and merge them.
    merged: list[AuditEvent] = []
    for name in actions_with_prefix(conn, action):
        merged += _page(conn, [*conditions, audit_events.c.action == name], limit, newest_first)
    merged.sort(key=lambda event: event.seq, reverse=newest_first)
    return merged[:limit]


def _page(
    conn: Connection, conditions: list[sa.ColumnElement[bool]], limit: int, newest_first: bool
) -> list[AuditEvent]:
    order = audit_events.c.seq.desc() if newest_first else audit_events.c.seq.asc()
    stmt = _select_with_columns().where(*conditions).order_by(order).limit(limit)
    return [_readable_event(row) for row in conn.execute(stmt)]


def iter_events(
    conn: Connection, *, since: datetime | None = None, batch: int = 5000
) -> Iterator[AuditEvent]:
    """Every record (from ``since``, inclusive) in seq order, streamed in bounded memory."""
    stmt = _select().order_by(audit_events.c.seq)
    if since is not None:
        stmt = stmt.where(audit_events.c.at >= since)
    result = conn.execute(stmt.execution_options(yield_per=batch))
    try:
        for seq, body, prev, digest in result:
            yield _event(seq, body, prev, digest)
    finally:
        result.close()


def export(conn: Connection, out: TextIO, since: datetime | None = None) -> int:
    """Write one canonical JSON line per record to ``out``; return how many were written.

    Each line is the record's body plus its ``hash``, so a copy can be checked without jitgate:
    drop ``hash``, re-serialize canonically, and recompute the chain.
    """
    count = 0
    for event in iter_events(conn, since=since):
        out.write(canonical_json(event.to_json()))
        out.write("\n")
        count += 1
    return count


def _select() -> sa.Select[int, str, str, str]:
    return sa.select(audit_events.c.seq, audit_events.c.body, audit_events.c.prev_hash, audit_events.c.hash)


def _select_with_columns() -> sa.Select[Any]:
    return sa.select(
        audit_events.c.seq,
        audit_events.c.body,
        audit_events.c.prev_hash,
        audit_events.c.hash,
        audit_events.c.at,
        audit_events.c.actor,
        audit_events.c.action,
        audit_events.c.request_id,
        audit_events.c.grant_id,
        audit_events.c.role,
    )


def _readable_event(row: sa.Row[Any]) -> AuditEvent:
    """The record, or, if its body is no longer a record (edited), what its filter columns say
    with a note in its details: a page of records stays readable around a damaged one."""
    seq, body, prev_hash, digest, at, actor, action, request_id, grant_id, role = tuple(row)
    try:
        event = _event(seq, body, prev_hash, digest)
        if _well_formed(event):
            return event
    except (ValueError, KeyError, TypeError):
        pass
    note = f"the body of record {seq} is not an audit record; run `jitgate audit verify`"
    return AuditEvent(
        seq, at, actor, action, request_id, grant_id, role, None, {"damaged": note}, prev_hash, digest
    )


def _well_formed(event: AuditEvent) -> bool:
    """Whether a parsed body has the types every reader relies on (JSON alone does not say so:
    an edited body may hold ``"details": null`` or a time without its zone)."""
    named = (event.request_id, event.grant_id, event.role, event.target)
    return (
        isinstance(event.details, dict)
        and event.at.tzinfo is not None
        and isinstance(event.actor, str)
        and isinstance(event.action, str)
        and all(value is None or isinstance(value, str) for value in named)
    )


def _event(seq: int, body: str, prev_hash: str, digest: str) -> AuditEvent:
    fields = json.loads(body)
    return AuditEvent(
        seq=seq,
        at=datetime.fromisoformat(fields["at"]),
        actor=fields["actor"],
        action=fields["action"],
        request_id=fields["request_id"],
        grant_id=fields["grant_id"],
        role=fields["role"],
        target=fields["target"],
        details=fields["details"],
        prev_hash=prev_hash,
        hash=digest,
    )
