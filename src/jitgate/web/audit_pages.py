"""The audit trail in the console: everyone's records for admins and auditors, one's own otherwise."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from jitgate.audit.query import query
from jitgate.web.pages import (
    AUDITORS,
    WEB_AUDIT_PAGE,
    current_session,
    page,
    record_number,
    runtime,
    session_csrf,
    to_login,
)

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/audit")
def audit(request: Request) -> Response:
    found = current_session(request)
    if found is None:
        return to_login()
    who = found.identity
    everyone = who.admin or AUDITORS in who.groups
    ctx = runtime(request).ctx
    before = request.query_params.get("before", "")
    with ctx.db.read() as conn:
        events = query(
            conn,
            actor=None if everyone else who.name,
            limit=WEB_AUDIT_PAGE,
            before_seq=record_number(before),
            newest_first=True,
        )
    rows = [{**e.to_json(), "details": json.dumps(e.details, sort_keys=True)[:300]} for e in events]
    older = f"/ui/audit?before={events[-1].seq}" if len(events) == WEB_AUDIT_PAGE else ""
    return page(
        "audit.html",
        title="audit",
        who=who,
        csrf=session_csrf(request),
        events=rows,
        everyone=everyone,
        older=older,
        newest="/ui/audit" if before else "",
    )
