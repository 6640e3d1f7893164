"""The access pages: what the signed-in user may review, has asked for and holds, and the forms
that request, review and revoke. They call the same workflow services as the API."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from jitgate.domain.durations import format_duration
from jitgate.domain.model import RequestState, Verdict
from jitgate.errors import JitgateError, StepUpRequired
from jitgate.policy.decision import may_request
from jitgate.store import issuance
from jitgate.store.paging import page_grants
from jitgate.web.oidc_signin import step_up
from jitgate.web.pages import (
    WEB_PAGE,
    back,
    check_csrf,
    current_session,
    ended,
    flash_context,
    page,
    pager,
    runtime,
    session_csrf,
    to_login,
)
from jitgate.workflow import grants, requests
from jitgate.workflow.views import grant_json, request_json

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/")
def home(request: Request) -> Response:
    found = current_session(request)
    if found is None:
        return to_login()
    who = found.identity
    messages = flash_context(request, found)
    ctx = runtime(request).ctx
    now = ctx.clock.now()
    params = request.query_params
    reviewable = requests.visible_requests(
        ctx,
        who,
        mine=False,
        reviewable=True,
        states=(RequestState.PENDING,),
        limit=WEB_PAGE,
        older_than=params.get("queue_cursor"),
        newer_than=params.get("queue_before"),
    )
    mine = requests.visible_requests(
        ctx,
        who,
        mine=True,
        reviewable=False,
        states=(),
        limit=WEB_PAGE,
        older_than=params.get("mine_cursor"),
        newer_than=params.get("mine_before"),
    )
    with ctx.db.read() as conn:
        held_page = page_grants(
            conn,
            holder=who.name,
            limit=WEB_PAGE,
            older_than=params.get("grants_cursor"),
            newer_than=params.get("grants_before"),
        )
        held = held_page.items
        pending = issuance.pending_revocations(conn, [g.id for g in held]) if held else []
    shown = []
    for grant in held:
        item = grant_json(grant, now)
        item["left"] = format_duration(grant.time_left(now)) if grant.is_active_at(now) else ""
        item["pending_revocations"] = [p for p in pending if p["grant_id"] == grant.id]
        shown.append(item)
    roles = [
        {"name": r.name, "max": format_duration(r.max_duration)}
        for r in ctx.policy.roles
        if may_request(who, r)
    ]
    return page(
        "home.html",
        title="access",
        who=who,
        csrf=session_csrf(request),
        reviewable=[request_json(r) for r in reviewable.items],
        queue_pages=pager(request, "queue", reviewable),
        mine=[request_json(r) for r in mine.items],
        mine_pages=pager(request, "mine", mine),
        grants=shown,
        grants_pages=pager(request, "grants", held_page),
        roles=roles,
        **messages,
    )


@router.post("/requests")
def create_request(
    request: Request,
    csrf: str = Form(""),
    role: str = Form(max_length=64),
    duration: str = Form("", max_length=32),
    reason: str = Form("", max_length=2000),
) -> Response:
    session = current_session(request)
    if session is None:
        return ended()
    try:
        check_csrf(request, csrf)
        made = requests.submit(
            runtime(request).ctx, session.identity, role=role, reason=reason, duration=duration or None
        )
    except StepUpRequired as exc:
        return step_up(request, session, exc)
    except JitgateError as exc:
        return back(request, session, "error", exc.message)
    return back(request, session, "notice", f"request {made['id']} is {made['state']}")


@router.post("/requests/{request_id}/review")
def review(
    request: Request,
    request_id: str,
    csrf: str = Form(""),
    verdict: str = Form(pattern="^(approve|deny)$"),
    comment: str = Form("", max_length=2000),
) -> Response:
    session = current_session(request)
    if session is None:
        return ended()
    try:
        check_csrf(request, csrf)
        done = requests.review(
            runtime(request).ctx, session.identity, request_id, verdict=Verdict(verdict), comment=comment
        )
    except StepUpRequired as exc:
        return step_up(request, session, exc)
    except JitgateError as exc:
        return back(request, session, "error", exc.message)
    return back(request, session, "notice", f"request {request_id} is {done['state']}")


@router.post("/grants/{grant_id}/revoke")
def revoke(request: Request, grant_id: str, csrf: str = Form("")) -> Response:
    session = current_session(request)
    if session is None:
        return ended()
    try:
        check_csrf(request, csrf)
        grants.revoke(runtime(request).ctx, session.identity, grant_id, comment="revoked from the web")
    except JitgateError as exc:
        return back(request, session, "error", exc.message)
    return back(request, session, "notice", f"grant {grant_id} revoked")
