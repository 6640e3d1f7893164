"""The audit trail over HTTP: admins and the ``auditors`` group read everything; others their own acts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query

from jitgate.api.deps import Caller, Ctx, RuntimeDep
from jitgate.audit.query import query
from jitgate.audit.verify import anchors, verify_anchored
from jitgate.errors import PolicyDenied

router = APIRouter(prefix="/api/v1")
AUDITORS = "auditors"


@router.get("/audit")
def audit_events(
    identity: Caller,
    ctx: Ctx,
    *,
    actor: str | None = None,
    role: str | None = None,
    action: str | None = None,
    request_id: str | None = None,
    since: datetime | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    after_seq: int | None = None,
    newest_first: bool = True,
) -> list[dict[str, Any]]:
    """Events matching the filters; by default the newest ``limit`` of them, newest first."""
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
            newest_first=newest_first,
        )
    return [event.to_json() for event in found]


@router.get("/audit/verify")
def audit_verify(identity: Caller, rt: RuntimeDep) -> dict[str, Any]:
    """The verdict of ``jitgate audit verify`` on this broker's data: chain, checkpoint, witness files."""
    if not (identity.admin or AUDITORS in identity.groups):
        raise PolicyDenied(f"{identity.name} may not verify the audit log")
    with rt.ctx.db.read() as conn:
        result = verify_anchored(conn, rt.ctx.audit.public_key, **anchors(rt.settings))
    return result.to_json()
