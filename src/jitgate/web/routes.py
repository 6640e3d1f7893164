"""The web pages: sign in with an API token, review, request, revoke, read the audit trail.

Pages call the same workflow services as the API. Signing in opens a server-side session
(``auth/sessions.py``); the cookie holds only its id, cannot be read by scripts (HttpOnly), is not
sent by other sites (SameSite=Strict) and only under ``/ui``, and means nothing to ``/api/v1``.
The sign-in form itself is protected against cross-site posting: the login page sets a random
pre-session cookie and the form carries a token derived from it (double submit), and a POST
whose ``Origin`` is another site is refused before any credential is looked at. Every other form
carries a token derived from the session (CSRF) and is refused, before anything is written, when
the token is wrong or the ``Origin`` is another site. Every response forbids framing and inline
scripts, and Jinja escapes everything it prints. Messages on a page are only those the broker
wrote: kept in the session for the next page, or a fixed text chosen by a code in the URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import timedelta
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from jitgate.audit.query import query
from jitgate.auth.sessions import WebSession, WebSessions, sign_in_identity
from jitgate.domain.durations import format_duration
from jitgate.domain.model import RequestState, Verdict
from jitgate.errors import JitgateError, TooManyFailures, Unauthenticated
from jitgate.policy.decision import may_request
from jitgate.runtime import Runtime
from jitgate.store import issuance
from jitgate.store.paging import Page, page_grants
from jitgate.workflow import grants, requests
from jitgate.workflow.auth_failures import audit_throttled
from jitgate.workflow.views import grant_json, request_json

router = APIRouter(prefix="/ui", include_in_schema=False)
COOKIE = "jitgate_session"
LOGIN_COOKIE = "jitgate_login"
AUDITORS = "auditors"
STALE_FORM = "this form is stale or came from another site; reload the page"
LOGIN_MESSAGES = {
    "signed_out": ("notice", "You have signed out."),
    "session_ended": ("error", "Your session has ended; sign in again."),
}
"""The only texts the sign-in page shows for a code in its URL; any other code shows nothing."""
WEB_PAGE = 50
WEB_AUDIT_PAGE = 200
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


MAX_SEQ = 2**63 - 1
MAX_SEQ_DIGITS = len(str(MAX_SEQ))


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _sessions(request: Request) -> WebSessions:
    rt = _runtime(request)
    return WebSessions(
        rt.ctx.db,
        rt.ctx.clock,
        idle=timedelta(seconds=rt.settings.web_session_idle_seconds),
        maximum=timedelta(seconds=rt.settings.web_session_max_seconds),
    )


def csrf_token(secret: str, purpose: str = "session") -> str:
    return hashlib.sha256(f"jitgate-csrf\x00{purpose}\x00{secret}".encode()).hexdigest()[:32]


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
        max_age=max_age,
    )


def _back(request: Request, session: WebSession, kind: str, text: str) -> RedirectResponse:
    _sessions(request).set_flash(session, kind, text)
    return RedirectResponse("/ui/", status_code=303, headers=HEADERS)


def _ended() -> RedirectResponse:
    return RedirectResponse("/ui/login?error=session_ended", status_code=303, headers=HEADERS)


def _session(request: Request) -> WebSession | None:
    return _sessions(request).resolve(request.cookies.get(COOKIE))


def _check_csrf(request: Request, csrf: str) -> None:
    # The Origin check stands even if a session's token leaks (a page, a log, a shoulder).
    expected = csrf_token(request.cookies.get(COOKIE, ""))
    if not _same_origin(request) or not hmac.compare_digest(csrf, expected):
        raise Unauthenticated(STALE_FORM)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # an opaque origin is never ours
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    kind, text = LOGIN_MESSAGES.get(request.query_params.get("error", ""), ("", ""))
    pre = request.cookies.get(LOGIN_COOKIE) or ""
    if len(pre) != 43:
        pre = secrets.token_urlsafe(32)
    response = _page(
        "login.html",
        title="sign in",
        csrf=csrf_token(pre, "login"),
        error=text if kind == "error" else "",
        notice=text if kind == "notice" else "",
    )
    _cookie(response, request, LOGIN_COOKIE, pre, max_age=3600)
    return response


@router.post("/login")
def login(
    request: Request, token: str = Form(max_length=4096), csrf: str = Form("", max_length=64)
) -> Response:
    pre = request.cookies.get(LOGIN_COOKIE) or ""
    if not pre or not _same_origin(request) or not hmac.compare_digest(csrf, csrf_token(pre, "login")):
        # Refused before the credential is looked at: nothing is checked, written or opened.
        return _page("login.html", status=403, title="sign in", csrf="", error=STALE_FORM)
    rt = _runtime(request)
    source = request.client.host if request.client else ""
    try:
        rt.auth_throttle.check(source)
    except TooManyFailures as exc:
        page = _page("login.html", status=429, title="sign in", csrf=csrf, error=exc.message)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    try:
        identity, token_id = sign_in_identity(rt.authenticators, token.strip())
    except Unauthenticated as exc:
        started = rt.auth_throttle.failed(source)
        if started is not None:
            audit_throttled(rt.ctx, rt.auth_throttle, started, "web")
        return _page("login.html", status=401, title="sign in", csrf=csrf, error=exc.message)
    session_id = _sessions(request).open(identity, token_id)
    response = RedirectResponse("/ui/", status_code=303, headers=HEADERS)
    _cookie(response, request, COOKIE, session_id, max_age=_runtime(request).settings.web_session_max_seconds)
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    session = _session(request)
    if session is not None:
        try:
            _check_csrf(request, csrf)
        except Unauthenticated as exc:
            return _back(request, session, "error", exc.message)
        _sessions(request).end(request.cookies.get(COOKIE))
    response = RedirectResponse("/ui/login?error=signed_out", status_code=303, headers=HEADERS)
    response.delete_cookie(COOKIE, path="/ui")
    return response


def _pager(request: Request, name: str, page: Page[Any]) -> dict[str, str]:
    """Links to the older and newer pages of one list on a page, keeping the other lists' place."""
    links = {}
    for rel, param, value in (("older", "cursor", page.older), ("newer", "before", page.newer)):
        if value is not None:
            url = request.url.remove_query_params(
                [f"{name}_cursor", f"{name}_before", "notice", "error"]
            ).include_query_params(**{f"{name}_{param}": value})
            links[rel] = f"{url.path}?{url.query}"
    return links


@router.get("/")
def home(request: Request) -> Response:
    found = _session(request)
    if found is None:
        return RedirectResponse("/ui/login", status_code=303)
    who = found.identity
    flash = _sessions(request).take_flash(found) or {}
    ctx = _runtime(request).ctx
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
    return _page(
        "home.html",
        title="access",
        who=who,
        csrf=csrf_token(request.cookies.get(COOKIE, "")),
        reviewable=[request_json(r) for r in reviewable.items],
        queue_pages=_pager(request, "queue", reviewable),
        mine=[request_json(r) for r in mine.items],
        mine_pages=_pager(request, "mine", mine),
        grants=shown,
        grants_pages=_pager(request, "grants", held_page),
        roles=roles,
        notice=flash.get("text", "") if flash.get("kind") == "notice" else "",
        error=flash.get("text", "") if flash.get("kind") == "error" else "",
    )


@router.post("/requests")
def create_request(
    request: Request,
    csrf: str = Form(""),
    role: str = Form(max_length=64),
    duration: str = Form("", max_length=32),
    reason: str = Form("", max_length=2000),
) -> Response:
    session = _session(request)
    if session is None:
        return _ended()
    try:
        _check_csrf(request, csrf)
        made = requests.submit(
            _runtime(request).ctx, session.identity, role=role, reason=reason, duration=duration or None
        )
    except JitgateError as exc:
        return _back(request, session, "error", exc.message)
    return _back(request, session, "notice", f"request {made['id']} is {made['state']}")


@router.post("/requests/{request_id}/review")
def review(
    request: Request,
    request_id: str,
    csrf: str = Form(""),
    verdict: str = Form(pattern="^(approve|deny)$"),
    comment: str = Form("", max_length=2000),
) -> Response:
    session = _session(request)
    if session is None:
        return _ended()
    try:
        _check_csrf(request, csrf)
        done = requests.review(
            _runtime(request).ctx, session.identity, request_id, verdict=Verdict(verdict), comment=comment
        )
    except JitgateError as exc:
        return _back(request, session, "error", exc.message)
    return _back(request, session, "notice", f"request {request_id} is {done['state']}")


@router.post("/grants/{grant_id}/revoke")
def revoke(request: Request, grant_id: str, csrf: str = Form("")) -> Response:
    session = _session(request)
    if session is None:
        return _ended()
    try:
        _check_csrf(request, csrf)
        grants.revoke(_runtime(request).ctx, session.identity, grant_id, comment="revoked from the web")
    except JitgateError as exc:
        return _back(request, session, "error", exc.message)
    return _back(request, session, "notice", f"grant {grant_id} revoked")


def _record_number(text: str) -> int | None:
    """An audit record number from a page link, or None (the newest page) for anything else.

    ``str.isdigit`` alone admits superscripts and 5,000-digit numbers, which crash ``int`` or the
    database; a link the broker wrote holds at most 19 ASCII digits.
    """
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_SEQ_DIGITS):
        return None
    number = int(text)
    return number if number <= MAX_SEQ else None


@router.get("/audit")
def audit(request: Request) -> Response:
    found = _session(request)
    if found is None:
        return RedirectResponse("/ui/login", status_code=303)
    who = found.identity
    everyone = who.admin or AUDITORS in who.groups
    ctx = _runtime(request).ctx
    before = request.query_params.get("before", "")
    with ctx.db.read() as conn:
        events = query(
            conn,
            actor=None if everyone else who.name,
            limit=WEB_AUDIT_PAGE,
            before_seq=_record_number(before),
            newest_first=True,
        )
    rows = [{**e.to_json(), "details": json.dumps(e.details, sort_keys=True)[:300]} for e in events]
    older = f"/ui/audit?before={events[-1].seq}" if len(events) == WEB_AUDIT_PAGE else ""
    return _page(
        "audit.html",
        title="audit",
        who=who,
        csrf=csrf_token(request.cookies.get(COOKIE, "")),
        events=rows,
        everyone=everyone,
        older=older,
        newest="/ui/audit" if before else "",
    )
