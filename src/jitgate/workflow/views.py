"""Read models handed to the API and CLI: a request with its reviews and grant, a grant with its
credentials, pending revocations and what its elevations changed at their targets
(``elevation_views``). Plain JSON-ready dicts, no secrets in them.

A grant read with the database at hand says how many of its elevations of existing accounts are
not applied yet (``elevations_pending``): an ACTIVE grant is usable once that is 0, which is what
``jitgate request --wait`` waits for."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from jitgate.domain.durations import format_duration
from jitgate.domain.model import AccessRequest, Grant
from jitgate.errors import NotFound
from jitgate.store import issuance
from jitgate.store import queries as q
from jitgate.workflow.elevation_views import Elevations, attach, elevations_by_grant

RequestView = dict[str, Any]
GrantView = dict[str, Any]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def grant_json(grant: Grant, now: datetime) -> dict[str, Any]:
    return {
        "id": grant.id,
        "request_id": grant.request_id,
        "holder": grant.holder,
        "role": grant.role,
        "targets": list(grant.targets),
        "state": grant.state.value,
        "starts_at": _iso(grant.starts_at),
        "expires_at": _iso(grant.expires_at),
        "ended_at": _iso(grant.ended_at),
        "end_reason": grant.end_reason.value if grant.end_reason else None,
        "break_glass": grant.break_glass,
        "seconds_left": int(grant.time_left(now).total_seconds()) if grant.is_active_at(now) else 0,
    }


def request_json(req: AccessRequest) -> dict[str, Any]:
    return {
        "id": req.id,
        "kind": req.kind.value,
        "requester": req.requester,
        "role": req.role,
        "targets": list(req.targets),
        "reason": req.reason,
        "duration": format_duration(req.duration),
        "duration_seconds": int(req.duration.total_seconds()),
        "state": req.state.value,
        "created_at": _iso(req.created_at),
        "review_deadline": _iso(req.review_deadline),
        "start_at": _iso(req.start_at),
        "extends_grant_id": req.extends_grant_id,
        "break_glass": req.break_glass,
        "auto_approved": req.auto_approved_rule,
        "decided_at": _iso(req.decided_at),
    }


def fresh_view(
    req: AccessRequest, grant: Grant | None, now: datetime, elevations: Elevations | None = None
) -> RequestView:
    """The view of a request just created in this process, without reading it back; its grant's
    ``elevations`` as read in the transaction that planned them."""
    out = request_json(req)
    if grant is not None:
        out["state"] = grant.state.value
        out["decided_at"] = _iso(now)
    out["reviews"] = []
    out["grant"] = attach(grant_json(grant, now), elevations or {}) if grant is not None else None
    return out


def request_view(conn: Connection, request_id: str, now: datetime) -> RequestView:
    req = q.get_request(conn, request_id)
    if req is None:
        raise NotFound(f"no request {request_id}")
    out = request_json(req)
    out["reviews"] = [
        {"reviewer": r.reviewer, "verdict": r.verdict.value, "comment": r.comment, "at": _iso(r.at)}
        for r in q.reviews_of(conn, request_id)
    ]
    grant = (
        q.get_grant(conn, req.extends_grant_id)
        if req.extends_grant_id
        else q.grant_of_request(conn, request_id)
    )
    if grant is not None:
        out["grant"] = attach(grant_json(grant, now), elevations_by_grant(conn, [grant.id]))
    else:
        out["grant"] = None
    return out


def grant_view(conn: Connection, grant_id: str, now: datetime) -> GrantView:
    grant = q.get_grant(conn, grant_id)
    if grant is None:
        raise NotFound(f"no grant {grant_id}")
    out = attach(grant_json(grant, now), elevations_by_grant(conn, [grant_id]))
    out["pending_revocations"] = [revocation_json(r) for r in issuance.pending_revocations(conn, [grant_id])]
    return out


def revocation_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "grant_id": row["grant_id"],
        "target": row["target"],
        "kind": row["kind"],
        "handle": row["handle"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "next_attempt_at": _iso(row["next_attempt_at"]),
    }
