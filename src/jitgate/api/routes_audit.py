"""The audit trail over HTTP: admins and the ``auditors`` group read everything; others their own acts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from jitgate.api.deps import Caller, Ctx
from jitgate.audit.query import query
from jitgate.audit.verify import verify
from jitgate.errors import PolicyDenied

router = APIRouter(prefix="/api/v1")
AUDITORS = "auditors"
MAX_SEQ = 2**63 - 1
"""The largest sequence number a record can have (a signed 64-bit column)."""
Seq = Annotated[int | None, Query(ge=0, le=MAX_SEQ)]


@router.get("/audit")
def audit_events(
    request: Request,
    response: Response,
    identity: Caller,
    ctx: Ctx,
    *,
    actor: str | None = None,
    role: str | None = None,
    action: str | None = None,
    request_id: str | None = None,
    since: datetime | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    after_seq: Seq = None,
    before_seq: Seq = None,
    newest_first: bool = True,
) -> list[dict[str, Any]]:
    """Events matching the filters; by default the newest ``limit`` of them, newest first.

    A full page carries a ``Link: rel="next"`` header to the page after it (older ones when
    newest first, with ``before_seq``; newer ones otherwise, with ``after_seq``)."""
    if not (identity.admin or AUDITORS in identity.groups):
        actor = identity.name
    with ctx.db.read() as conn:
        found = query(
            conn,
            actor=actor,
            role=role,
            action=action,
            request_id=request_id,
            since=since,
            limit=limit,
            after_seq=after_seq,
            before_seq=before_seq,
            newest_first=newest_first,
        )
    if len(found) == limit:
        param = "before_seq" if newest_first else "after_seq"
        url = request.url.include_query_params(**{param: found[-1].seq})
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return [event.to_json() for event in found]


@router.get("/audit/verify")
def audit_verify(identity: Caller, ctx: Ctx) -> dict[str, Any]:
    if not (identity.admin or AUDITORS in identity.groups):
        raise PolicyDenied(f"{identity.name} may not verify the audit log")
    with ctx.db.read() as conn:
        result = verify(conn, ctx.audit.public_key)
    return {
        "ok": result.ok,
        "count": result.count,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem,
    }
