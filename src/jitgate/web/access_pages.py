"""The signed-in user's access: their grants with the time left and what they changed at their
targets, their requests, the form that asks for a role, and the inbox of requests they may review.
They call the same workflow services as the API, which decide what each person may see and do."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from jitgate.auth.sessions import WebSession
from jitgate.domain.durations import format_duration
from jitgate.domain.model import RequestState
from jitgate.errors import JitgateError
from jitgate.policy.decision import may_request
from jitgate.store import issuance
from jitgate.store.paging import page_grants
from jitgate.web.display import changes, expiry, kept, when
from jitgate.web.frame import frame, missing
from jitgate.web.pages import (
    WEB_PAGE,
    back,
    check_csrf,
    current_session,
    ended,
    page,
    pager,
    runtime,
    to_login,
)
from jitgate.web.refusals import refused
from jitgate.workflow import requests
from jitgate.workflow.elevation_views import attach, elevations_by_grant
from jitgate.workflow.views import grant_json, request_json

router = APIRouter(prefix="/ui", include_in_schema=False)
EMPTY_FORM = {"role": "", "duration": "", "reason": ""}


def request_row(req: dict[str, Any]) -> dict[str, Any]:
    """A request view as a row of a list: its times readable."""
    return {**req, "created": when(req["created_at"]), "deadline": when(req["review_deadline"])}


@router.get("/")
def home(request: Request) -> Response:
    found = current_session(request)
    if found is None:
        return to_login()
    try:
        return _home(request, found, frame(request, found, refresh="/ui/"), EMPTY_FORM)
    except JitgateError as exc:
        return missing(request, found, exc)


def _home(
    request: Request, session: WebSession, context: dict[str, Any], form: dict[str, str], status: int = 200
) -> Response:
    who = session.identity
    ctx = runtime(request).ctx
    now = ctx.clock.now()
    params = request.query_params
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
        changed = elevations_by_grant(conn, [g.id for g in held])
    shown = []
    for grant in held:
        item = attach(grant_json(grant, now), changed)
        item["changes"] = changes(item)
        item["ends"] = expiry(item, now)
        item["pending_revocations"] = sum(p["grant_id"] == grant.id for p in pending)
        shown.append(item)
    roles = [
        {
            "name": r.name,
            "default": format_duration(r.duration_default),
            "max": format_duration(r.max_duration),
        }
        for r in ctx.policy.roles
        if may_request(who, r)
    ]
    return page(
        "home.html",
        status=status,
        title="access",
        mine=[request_row(request_json(r)) for r in mine.items],
        mine_pages=pager(request, "mine", mine),
        grants=shown,
        grants_pages=pager(request, "grants", held_page),
        roles=roles,
        form=form,
        **context,
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
    except JitgateError as exc:

        def again(message: str, status: int) -> Response:
            context = {**frame(request, session, refresh="/ui/", flash=False), "error": message}
            typed = {"role": kept(role), "duration": kept(duration), "reason": kept(reason)}
            return _home(request, session, context, typed, status)

        return refused(exc, again, request, session, "/ui/")
    grant = made.get("grant")
    if grant:
        text = f"request {made['id']} is {made['state']}: grant {grant['id']}"
        return back(request, session, "notice", text, to=f"/ui/grants/{grant['id']}")
    return back(
        request,
        session,
        "notice",
        f"request {made['id']} is {made['state']}",
        to=f"/ui/requests/{made['id']}",
    )


@router.get("/inbox")
def inbox(request: Request) -> Response:
    found = current_session(request)
    if found is None:
        return to_login()
    ctx = runtime(request).ctx
    params = request.query_params
    try:
        context = frame(request, found)
        waiting = requests.visible_requests(
            ctx,
            found.identity,
            mine=False,
            reviewable=True,
            states=(RequestState.PENDING,),
            limit=WEB_PAGE,
            older_than=params.get("queue_cursor"),
            newer_than=params.get("queue_before"),
        )
    except JitgateError as exc:
        return missing(request, found, exc)
    return page(
        "inbox.html",
        title="inbox",
        waiting=[request_row(request_json(r)) for r in waiting.items],
        queue_pages=pager(request, "queue", waiting),
        **context,
    )
