"""One request's page: everything a reviewer decides on, why this reader may (or may not) review
it, its reviews so far, the approve/deny form, and links to its grant and its audit records."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from jitgate.auth.sessions import WebSession
from jitgate.domain.model import Verdict
from jitgate.errors import JitgateError
from jitgate.web.display import expiry, kept, when
from jitgate.web.frame import frame, missing
from jitgate.web.pages import back, check_csrf, current_session, ended, page, runtime, to_login
from jitgate.web.refusals import refused
from jitgate.workflow import requests
from jitgate.workflow.detail_views import request_detail

router = APIRouter(prefix="/ui", include_in_schema=False)


def _request_page(
    request: Request,
    session: WebSession,
    request_id: str,
    context: dict[str, Any],
    *,
    comment: str = "",
    status: int = 200,
) -> Response:
    ctx = runtime(request).ctx
    try:
        detail = request_detail(ctx, session.identity, request_id)
    except JitgateError as exc:
        return missing(request, session, exc)
    now = ctx.clock.now()
    times = {key: when(detail[key]) for key in ("created_at", "review_deadline", "start_at", "decided_at")}
    extension = detail["extension"]
    if extension is not None:
        extension = {**extension, "from_at": when(extension["from"]), "to_at": when(extension["to"])}
    grant = detail["grant"]
    if grant is not None:
        grant = {**grant, "ends": expiry(grant, now)}
    reviews = [{**r, "when": when(r["at"])} for r in detail["reviews"]]
    return page(
        "request.html",
        status=status,
        title=f"request {request_id}",
        req=detail,
        times=times,
        extension=extension,
        grant=grant,
        reviews=reviews,
        comment=comment,
        **context,
    )


@router.get("/requests/{request_id}")
def request_page(request: Request, request_id: str) -> Response:
    found = current_session(request)
    if found is None:
        return to_login()
    return _request_page(
        request, found, request_id, frame(request, found, refresh=f"/ui/requests/{request_id}")
    )


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
    except JitgateError as exc:

        def again(message: str, status: int) -> Response:
            context = {
                **frame(request, session, refresh=f"/ui/requests/{request_id}", flash=False),
                "error": message,
            }
            return _request_page(request, session, request_id, context, comment=kept(comment), status=status)

        return refused(exc, again, request, session, f"/ui/requests/{request_id}")
    return back(
        request,
        session,
        "notice",
        f"request {request_id} is {done['state']}",
        to=f"/ui/requests/{request_id}",
    )
