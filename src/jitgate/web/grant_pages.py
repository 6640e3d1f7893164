"""One grant's page: who holds what until when (with the time left counting down), what it
changed at its targets (a role granted to an existing login, a group joined), the credentials
issued under it, revocations still being worked on, the extensions asked for it, how to connect,
and the forms that extend and revoke it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from jitgate.auth.sessions import WebSession
from jitgate.errors import JitgateError
from jitgate.web.connect import connect_commands
from jitgate.web.display import changes, expiry, kept, when
from jitgate.web.frame import frame, missing
from jitgate.web.pages import back, check_csrf, current_session, ended, page, runtime, to_login
from jitgate.web.refusals import refused
from jitgate.workflow import grants
from jitgate.workflow.detail_views import grant_detail

router = APIRouter(prefix="/ui", include_in_schema=False)
EMPTY_EXTEND = {"duration": "", "reason": ""}


def _grant_page(
    request: Request,
    session: WebSession,
    grant_id: str,
    context: dict[str, Any],
    *,
    extend: dict[str, str] = EMPTY_EXTEND,
    status: int = 200,
) -> Response:
    rt = runtime(request)
    try:
        detail = grant_detail(rt.ctx, session.identity, grant_id)
    except JitgateError as exc:
        return missing(request, session, exc)
    now = rt.ctx.clock.now()
    usable = detail["is_holder"] and detail["state"] in ("ACTIVE", "APPROVED")
    commands = (
        connect_commands(
            rt.ctx.policy, detail["role"], detail["targets"], gateway=bool(rt.settings.gateway_listen)
        )
        if usable
        else []
    )
    credentials = [
        {
            **c,
            "until": when(c["valid_before"]),
            "revoked": when(c["revoked_at"]),
            "issued": when(c["created_at"]),
        }
        for c in detail["credentials"]
    ]
    return page(
        "grant.html",
        status=status,
        title=f"grant {grant_id}",
        grant=detail,
        ends=expiry(detail, now),
        starts=when(detail["starts_at"]),
        ended_at=when(detail["ended_at"]),
        credentials=credentials,
        changes=changes(detail),
        extensions=[{**e, "created": when(e["created_at"])} for e in detail["extensions"]],
        commands=commands,
        extend=extend,
        **context,
    )


@router.get("/grants/{grant_id}")
def grant_page(request: Request, grant_id: str) -> Response:
    found = current_session(request)
    if found is None:
        return to_login()
    return _grant_page(request, found, grant_id, frame(request, found, refresh=f"/ui/grants/{grant_id}"))


@router.post("/grants/{grant_id}/extend")
def extend(
    request: Request,
    grant_id: str,
    csrf: str = Form(""),
    duration: str = Form("", max_length=32),
    reason: str = Form("", max_length=2000),
) -> Response:
    session = current_session(request)
    if session is None:
        return ended()
    try:
        check_csrf(request, csrf)
        made = grants.extend(
            runtime(request).ctx, session.identity, grant_id, duration=duration, reason=reason
        )
    except JitgateError as exc:

        def again(message: str, status: int) -> Response:
            context = {
                **frame(request, session, refresh=f"/ui/grants/{grant_id}", flash=False),
                "error": message,
            }
            typed = {"duration": kept(duration), "reason": kept(reason)}
            return _grant_page(request, session, grant_id, context, extend=typed, status=status)

        return refused(exc, again, request, session, f"/ui/grants/{grant_id}")
    text = f"extension {made['id']} is {made['state']}"
    return back(request, session, "notice", text, to=f"/ui/grants/{grant_id}")


@router.post("/grants/{grant_id}/revoke")
def revoke(request: Request, grant_id: str, csrf: str = Form("")) -> Response:
    session = current_session(request)
    if session is None:
        return ended()
    try:
        check_csrf(request, csrf)
        grants.revoke(runtime(request).ctx, session.identity, grant_id, comment="revoked from the web")
    except JitgateError as exc:

        def again(message: str, status: int) -> Response:
            return _grant_page(
                request,
                session,
                grant_id,
                {**frame(request, session, refresh=f"/ui/grants/{grant_id}", flash=False), "error": message},
                status=status,
            )

        return refused(exc, again, request, session, f"/ui/grants/{grant_id}")
    return back(request, session, "notice", f"grant {grant_id} revoked", to=f"/ui/grants/{grant_id}")
