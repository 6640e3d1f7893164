"""The web pages: sign in with an API token, review, request, revoke, read the audit trail.

Pages call the same workflow services as the API. The session is the caller's token in a cookie
that scripts cannot read (HttpOnly), that other sites cannot send (SameSite=Strict) and that is
only sent under ``/ui``. Every form also carries a token derived from the session (CSRF), every
response forbids framing and inline scripts, and Jinja escapes everything it prints.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from jitgate.audit.query import query
from jitgate.auth.base import authenticate
from jitgate.domain.durations import format_duration
from jitgate.domain.identity import Identity
from jitgate.domain.model import RequestState, Verdict
from jitgate.errors import JitgateError, TooManyFailures, Unauthenticated
from jitgate.policy.decision import may_request
from jitgate.runtime import Runtime
from jitgate.store import queries as q
from jitgate.workflow import grants, requests
from jitgate.workflow.auth_failures import audit_throttled
from jitgate.workflow.views import grant_json, request_json

router = APIRouter(prefix="/ui", include_in_schema=False)
COOKIE = "jitgate_session"
AUDITORS = "auditors"
_templates = Environment(
    loader=FileSystemLoader(str(files("jitgate") / "web" / "templates")),
    autoescape=select_autoescape(["html"]),
)
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def csrf_token(session: str) -> str:
    return hashlib.sha256(b"jitgate-csrf\x00" + session.encode()).hexdigest()[:32]


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _back(notice: str = "", error: str = "", to: str = "/ui/") -> RedirectResponse:
    params = f"?notice={quote(notice)}" if notice else f"?error={quote(error)}" if error else ""
    return RedirectResponse(to + params, status_code=303, headers=HEADERS)


def _session(request: Request) -> tuple[Identity, str] | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return authenticate(_runtime(request).authenticators, f"Bearer {token}"), token
    except Unauthenticated:
        return None


def _checked(request: Request, csrf: str) -> tuple[Identity, str]:
    found = _session(request)
    if found is None:
        raise Unauthenticated("your session has ended; sign in again")
    if not hmac.compare_digest(csrf, csrf_token(found[1])):
        raise Unauthenticated("this form is stale or came from another site; reload the page")
    return found


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    return _page("login.html", title="sign in", error=request.query_params.get("error", ""))


@router.post("/login")
def login(request: Request, token: str = Form(max_length=4096)) -> Response:
    rt = _runtime(request)
    source = request.client.host if request.client else ""
    try:
        rt.auth_throttle.check(source)
    except TooManyFailures as exc:
        page = _page("login.html", status=429, title="sign in", error=exc.message)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    try:
        authenticate(rt.authenticators, f"Bearer {token.strip()}")
    except Unauthenticated as exc:
        started = rt.auth_throttle.failed(source)
        if started is not None:
            audit_throttled(rt.ctx, rt.auth_throttle, started, "web")
        return _page("login.html", status=401, title="sign in", error=exc.message)
    response = RedirectResponse("/ui/", status_code=303, headers=HEADERS)
    response.set_cookie(
        COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
        max_age=12 * 3600,
    )
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    if _session(request) is not None:
        _checked(request, csrf)
    response = RedirectResponse("/ui/login", status_code=303, headers=HEADERS)
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/")
def home(request: Request) -> Response:
    found = _session(request)
    if found is None:
        return RedirectResponse("/ui/login", status_code=303)
    who, session = found
    ctx = _runtime(request).ctx
    now = ctx.clock.now()
    reviewable = requests.visible_requests(
        ctx, who, mine=False, reviewable=True, states=(RequestState.PENDING,)
    )
    mine = requests.visible_requests(ctx, who, mine=True, reviewable=False, states=())
    with ctx.db.read() as conn:
        held = q.list_grants(conn, holder=who.name, limit=50)
        pending = q.pending_revocations(conn, [g.id for g in held]) if held else []
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
    return _page(
        "home.html",
        title="access",
        who=who,
        csrf=csrf_token(session),
        reviewable=[request_json(r) for r in reviewable],
        mine=[request_json(r) for r in mine[:50]],
        grants=shown,
        roles=roles,
        notice=request.query_params.get("notice", ""),
        error=request.query_params.get("error", ""),
    )


@router.post("/requests")
def create_request(
    request: Request,
    csrf: str = Form(""),
    role: str = Form(max_length=64),
    duration: str = Form("", max_length=32),
    reason: str = Form("", max_length=2000),
) -> Response:
    try:
        who, _ = _checked(request, csrf)
        made = requests.submit(
            _runtime(request).ctx, who, role=role, reason=reason, duration=duration or None
        )
    except JitgateError as exc:
        return _back(error=exc.message)
    return _back(notice=f"request {made['id']} is {made['state']}")


@router.post("/requests/{request_id}/review")
def review(
    request: Request,
    request_id: str,
    csrf: str = Form(""),
    verdict: str = Form(pattern="^(approve|deny)$"),
    comment: str = Form("", max_length=2000),
) -> Response:
    try:
        who, _ = _checked(request, csrf)
        done = requests.review(
            _runtime(request).ctx, who, request_id, verdict=Verdict(verdict), comment=comment
        )
    except JitgateError as exc:
        return _back(error=exc.message)
    return _back(notice=f"request {request_id} is {done['state']}")


@router.post("/grants/{grant_id}/revoke")
def revoke(request: Request, grant_id: str, csrf: str = Form("")) -> Response:
    try:
        who, _ = _checked(request, csrf)
        grants.revoke(_runtime(request).ctx, who, grant_id, comment="revoked from the web")
    except JitgateError as exc:
        return _back(error=exc.message)
    return _back(notice=f"grant {grant_id} revoked")


@router.get("/audit")
def audit(request: Request) -> Response:
    found = _session(request)
    if found is None:
        return RedirectResponse("/ui/login", status_code=303)
    who, session = found
    everyone = who.admin or AUDITORS in who.groups
    ctx = _runtime(request).ctx
    with ctx.db.read() as conn:
        events = query(conn, actor=None if everyone else who.name, limit=200, newest_first=True)
    rows = [{**e.to_json(), "details": json.dumps(e.details, sort_keys=True)[:300]} for e in events]
    return _page(
        "audit.html", title="audit", who=who, csrf=csrf_token(session), events=rows, everyone=everyone
    )
