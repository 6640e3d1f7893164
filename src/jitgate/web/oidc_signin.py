"""Signing in to the console at the OpenID provider (single sign-on), and stepping up for a role.

``/ui/oidc/start`` sends the browser to the provider (``auth/oidc_flow.py`` keeps the sign-in);
``/ui/oidc/callback`` completes it and opens a session of whoever signed in there. A completed
sign-in always opens a new session: a step-up never upgrades the session it started from, so a
different person signing in at the provider gets their own session, never someone else's.

Cookies. The sign-in is bound to the browser by a random pre-session cookie, ``SameSite=Lax``
and only under ``/ui/oidc``, because the provider sends the browser back with a cross-site
navigation, which carries Lax cookies and no Strict ones. For the same reason the callback does
not redirect to the console: a redirect would still be part of that cross-site navigation, and
the session cookie (Strict) would not be sent with it. It answers a small page instead, whose
``<meta http-equiv="refresh">`` (no script: the CSP forbids inline ones) starts a new, same-site
navigation to where the sign-in began.

Where to go afterwards (``next``) is only ever a path of the console's own.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jitgate.auth.oidc_flow import OidcWebSignIn
from jitgate.auth.sessions import WebSession
from jitgate.errors import (
    IdentityProviderUnavailable,
    StepUpRequired,
    TooManyFailures,
    Unauthenticated,
)
from jitgate.policy.model import ACR
from jitgate.store.oidc_sign_ins import PendingSignIn
from jitgate.web.pages import (
    COOKIE,
    HEADERS,
    LOGIN_COOKIE,
    back,
    page,
    runtime,
    sessions,
    set_cookie,
)
from jitgate.workflow.auth_failures import audit_throttled

router = APIRouter(prefix="/ui/oidc", include_in_schema=False)
FLOW_COOKIE = "jitgate_oidc"
FLOW_PATH = "/ui/oidc"
FLOW_SECONDS = 600
_FLOW_FORM = re.compile(r"^[A-Za-z0-9_-]{43}$")
_NEXT = re.compile(r"^/ui/[A-Za-z0-9/_.~%?&=+-]{0,500}$")
_ACR = re.compile(ACR)
STEPPED_UP = (
    "You signed in again at the identity provider. What you were doing was not sent: "
    "submit the request or review again."
)
PROVIDER_ERRORS = {
    "access_denied": "the sign-in at the identity provider was cancelled or refused",
    "login_required": "the identity provider needs you to sign in",
    "interaction_required": "the identity provider needs you to sign in",
    "consent_required": "the identity provider needs your consent for the broker",
    "unmet_authentication_requirements": "the identity provider could not sign you in as strongly as asked",
    "temporarily_unavailable": "the identity provider is unavailable; try again later",
    "server_error": "the identity provider failed; try again later",
}
"""The only texts shown for a provider's ``error``; any other code gets a generic line."""


def safe_next(value: str | None) -> str:
    """``value`` if it is a path of the console's own (not the sign-in itself), else ``/ui/``."""
    if not value or not _NEXT.match(value) or "//" in value or ".." in value or value.startswith(FLOW_PATH):
        return "/ui/"
    return value


def refusal(status: int, text: str) -> HTMLResponse:
    """The sign-in page with one line saying why this sign-in did not work."""
    return page("login.html", status=status, title="sign in", csrf="", sso=True, error=text)


@router.get("/start")
def start(request: Request) -> Response:
    params = request.query_params
    raw_age = params.get("max_age", "")
    max_age = int(raw_age) if raw_age.isascii() and raw_age.isdigit() and len(raw_age) <= 5 else None
    acr_values = tuple(v for v in params.get("acr_values", "").split(" ") if _ACR.match(v))[:8]
    return start_sign_in(request, safe_next(params.get("next")), max_age=max_age, acr_values=acr_values)


def start_sign_in(
    request: Request, return_to: str, *, max_age: int | None = None, acr_values: tuple[str, ...] = ()
) -> Response:
    """Send the browser to the provider, bound to this browser by the pre-session cookie."""
    web = runtime(request).oidc_web
    if web is None:
        return refusal(404, "single sign-on is not configured on this broker; sign in with an API token")
    browser = request.cookies.get(FLOW_COOKIE) or ""
    if not _FLOW_FORM.match(browser):
        browser = secrets.token_urlsafe(32)
    try:
        url = web.start(browser=browser, return_to=return_to, max_age=max_age, acr_values=acr_values)
    except IdentityProviderUnavailable as exc:
        return refusal(503, exc.message)
    response = RedirectResponse(url, status_code=303, headers=HEADERS)
    response.set_cookie(
        FLOW_COOKIE,
        browser,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=FLOW_PATH,
        max_age=FLOW_SECONDS,
    )
    return response


@router.get("/callback")
def callback(request: Request) -> Response:
    web = runtime(request).oidc_web
    if web is None:
        return refusal(404, "single sign-on is not configured on this broker")
    params = request.query_params
    state = params.get("state", "")
    # Taken first, whatever follows: a state is spent by its first use, failed or not.
    pending = web.take(state) if 0 < len(state) <= 128 else None
    problem = answer_problem(
        params.get("error"), params.get("iss"), params.get("code", ""), web.provider.issuer
    )
    if problem is not None:
        return refusal(*problem)
    return complete(request, web, pending, params["code"])


def answer_problem(error: str | None, iss: str | None, code: str, issuer: str) -> tuple[int, str] | None:
    """What is wrong with the provider's answer itself, before anything is exchanged."""
    if error is not None:
        return 401, PROVIDER_ERRORS.get(error, "the sign-in at the identity provider failed")
    if iss is not None and iss != issuer:
        return 401, "this answer comes from another identity provider; start again"
    if not code or len(code) > 2048:
        return 400, "the identity provider sent no sign-in code; start again"
    return None


def complete(request: Request, web: OidcWebSignIn, pending: PendingSignIn | None, code: str) -> Response:
    """Exchange the code, open the session of whoever signed in, and send the browser on."""
    rt = runtime(request)
    source = request.client.host if request.client else ""
    try:
        rt.auth_throttle.check(source)
        done = web.finish(pending, code=code, browser=request.cookies.get(FLOW_COOKIE))
    except TooManyFailures as exc:
        refused = refusal(429, exc.message)
        refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    except Unauthenticated as exc:
        started = rt.auth_throttle.failed(source)
        if started is not None:
            audit_throttled(rt.ctx, rt.auth_throttle, started, "web")
        return refusal(401, exc.message)
    except IdentityProviderUnavailable as exc:
        return refusal(502, exc.message)
    flash = {"kind": "notice", "text": STEPPED_UP} if done.step_up else None
    session_id = sessions(request).open(done.identity, None, done.oidc, flash)
    response = onward(done.return_to, "Signed in", "", "Continue to the console")
    set_cookie(response, request, COOKIE, session_id, max_age=rt.settings.web_session_max_seconds)
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH)
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


def onward(target: str, heading: str, text: str, link: str) -> HTMLResponse:
    """A page that sends the browser on to ``target`` by itself (``meta refresh``, no script).

    Used where a redirect would not do: the end of the provider's cross-site navigation (see
    above), and a form's answer that leads to the provider, since browsers apply the CSP's
    ``form-action 'self'`` to the redirects that follow a form, and would stop there.
    """
    return page("onward.html", title=heading.lower(), target=target, heading=heading, text=text, link=link)


def step_up(request: Request, session: WebSession, exc: StepUpRequired, return_to: str = "/ui/") -> Response:
    """Send the browser to sign in again as strongly as a role demands, then back to ``return_to``.

    Without single sign-on (a session opened with an API token on a broker without a provider)
    there is nothing to step up to: the page says why.
    """
    if runtime(request).oidc_web is None:
        return back(request, session, "error", exc.message, return_to)
    query = {"next": safe_next(return_to)}
    if exc.max_age is not None:
        query["max_age"] = str(exc.max_age)
    if exc.acr_values:
        query["acr_values"] = " ".join(exc.acr_values)
    return onward(
        f"{FLOW_PATH}/start?{urlencode(query)}",
        "Sign in again",
        f"{exc.message}; then submit it again.",
        "Sign in at the identity provider",
    )


def sign_out_url(request: Request, session: WebSession) -> str | None:
    """Where signing out continues at the provider for a session opened there, else None."""
    rt = runtime(request)
    if rt.oidc_web is None or session.oidc is None:
        return None
    return rt.oidc_web.end_session_url(session.oidc, f"{rt.settings.base_url}/ui/login?error=signed_out")
