"""The audit trail over HTTP: admins and the ``auditors`` group read everything; others their own acts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response

from jitgate.api.deps import Caller, Ctx, RuntimeDep
from jitgate.audit.query import query, reads_everyone, visible_actor
from jitgate.audit.verify import anchors, verify_anchored
from jitgate.domain.durations import instant_argument
from jitgate.errors import Conflict, PolicyDenied

router = APIRouter(prefix="/api/v1")
MAX_SEQ = 2**63 - 1
"""The largest record number a database column holds; a larger ``after_seq`` is a 422, not a 500."""
VERIFYING = "a verification of the audit log is already running on this broker; try again when it ends"


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
    after_seq: int | None = Query(default=None, ge=0, le=MAX_SEQ),
    before_seq: int | None = Query(default=None, ge=0, le=MAX_SEQ),
    newest_first: bool = True,
) -> list[dict[str, Any]]:
    """Events matching the filters; by default the newest ``limit`` of them, newest first.

    A full page carries a ``Link: rel="next"`` header to the page after it (older ones when
    newest first, with ``before_seq``; newer ones otherwise, with ``after_seq``)."""
    actor = visible_actor(identity, actor)
    if since is not None:
        since = instant_argument(since, "since")
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
def audit_verify(identity: Caller, rt: RuntimeDep) -> dict[str, Any]:
    """The verdict of ``jitgate audit verify`` on this broker's data: chain, checkpoint, witness files."""
    if not reads_everyone(identity):
        raise PolicyDenied(f"{identity.name} may not verify the audit log")
    # One at a time: concurrent calls would hold every worker thread of the broker for seconds.
    if not rt.verifying.acquire(blocking=False):
        raise Conflict(VERIFYING)
    try:
        with rt.ctx.db.read() as conn:
            result = verify_anchored(conn, rt.ctx.audit.public_key, **anchors(rt.settings))
    finally:
        rt.verifying.release()
    return result.to_json()
