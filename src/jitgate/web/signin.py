"""Signing in to the console with an API token, and signing out.

The sign-in form is protected against cross-site posting: the login page sets a random
pre-session cookie and the form carries a token derived from it (double submit), and a POST whose
``Origin`` is another site is refused before any credential is looked at. Signing out ends the
server-side session, so the cookie means nothing afterwards in any broker process; a session
opened at the identity provider then signs out there too (``oidc_signin.py``).
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jitgate.auth.sessions import sign_in_identity
from jitgate.errors import TooManyFailures, Unauthenticated
from jitgate.web.oidc_signin import onward, sign_out_url
from jitgate.web.pages import (
    COOKIE,
    HEADERS,
    LOGIN_COOKIE,
    STALE_FORM,
    back,
    check_csrf,
    csrf_token,
    current_session,
    page,
    runtime,
    same_origin,
    sessions,
    set_cookie,
)
from jitgate.workflow.auth_failures import audit_throttled

router = APIRouter(prefix="/ui", include_in_schema=False)
LOGIN_MESSAGES = {
    "signed_out": ("notice", "You have signed out."),
    "session_ended": ("error", "Your session has ended; sign in again."),
}
"""The only texts the sign-in page shows for a code in its URL; any other code shows nothing."""


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    kind, text = LOGIN_MESSAGES.get(request.query_params.get("error", ""), ("", ""))
    pre = request.cookies.get(LOGIN_COOKIE) or ""
    if len(pre) != 43:
        pre = secrets.token_urlsafe(32)
    response = page(
        "login.html",
        title="sign in",
        csrf=csrf_token(pre, "login"),
        error=text if kind == "error" else "",
        notice=text if kind == "notice" else "",
        sso=runtime(request).oidc_web is not None,
    )
    set_cookie(response, request, LOGIN_COOKIE, pre, max_age=3600)
    return response


@router.post("/login")
def login(
    request: Request, token: str = Form(max_length=4096), csrf: str = Form("", max_length=64)
) -> Response:
    pre = request.cookies.get(LOGIN_COOKIE) or ""
    if not pre or not same_origin(request) or not hmac.compare_digest(csrf, csrf_token(pre, "login")):
        # Refused before the credential is looked at: nothing is checked, written or opened.
        return page("login.html", status=403, title="sign in", csrf="", error=STALE_FORM)
    rt = runtime(request)
    source = request.client.host if request.client else ""
    try:
        rt.auth_throttle.check(source)
    except TooManyFailures as exc:
        refused = page("login.html", status=429, title="sign in", csrf=csrf, error=exc.message)
        refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    try:
        identity, token_id = sign_in_identity(rt.authenticators, token.strip())
    except Unauthenticated as exc:
        started = rt.auth_throttle.failed(source)
        if started is not None:
            audit_throttled(rt.ctx, rt.auth_throttle, started, "web")
        return page("login.html", status=401, title="sign in", csrf=csrf, error=exc.message)
    session_id = sessions(request).open(identity, token_id)
    response = RedirectResponse("/ui/", status_code=303, headers=HEADERS)
    set_cookie(response, request, COOKIE, session_id, max_age=rt.settings.web_session_max_seconds)
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    session = current_session(request)
    to = "/ui/login?error=signed_out"
    if session is not None:
        try:
            check_csrf(request, csrf)
        except Unauthenticated as exc:
            return back(request, session, "error", exc.message)
        # A session opened at the identity provider signs out there too, and comes back here.
        at_provider = sign_out_url(request, session)
        sessions(request).end(request.cookies.get(COOKIE))
        if at_provider is not None:
            answer = onward(at_provider, "Signed out", "", "Sign out at the identity provider too")
            answer.delete_cookie(COOKIE, path="/ui")
            return answer
    response = RedirectResponse(to, status_code=303, headers=HEADERS)
    response.delete_cookie(COOKIE, path="/ui")
    return response
