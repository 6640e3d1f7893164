"""What every console page shares: templates, security headers, the signed-in session, CSRF checks.

Signing in opens a server-side session (``auth/sessions.py``); the cookie holds only its id,
cannot be read by scripts (HttpOnly), is not sent by other sites (SameSite=Strict) and only under
``/ui``, and means nothing to ``/api/v1``. Every form carries a token derived from the session
(CSRF) and is refused, before anything is written, when the token is wrong or the ``Origin`` is
another site. Every response forbids framing, inline scripts and styles, and anything not served
by the broker itself (``/ui/static``); Jinja escapes everything it prints. Messages on a page are
only those the broker wrote: kept in the session for the next page, or a fixed text chosen by a
code in the URL.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from jitgate.auth.sessions import WebSession, WebSessions
from jitgate.domain.text import printable
from jitgate.errors import Unauthenticated
from jitgate.runtime import Runtime
from jitgate.store.paging import Page

COOKIE = "jitgate_session"
LOGIN_COOKIE = "jitgate_login"
AUDITORS = "auditors"
STALE_FORM = "this form is stale or came from another site; reload the page"
WEB_PAGE = 50
WEB_AUDIT_PAGE = 200
MAX_SEQ = 2**63 - 1
MAX_SEQ_DIGITS = len(str(MAX_SEQ))
MAX_MESSAGE = 500
templates = Environment(
    loader=FileSystemLoader(str(files("jitgate") / "web" / "templates")),
    autoescape=select_autoescape(["html"]),
)
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it browsers send ``Origin: null`` with a form's POST, which
    # ``same_origin`` must refuse. same-origin tells other sites nothing either.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def sessions(request: Request) -> WebSessions:
    rt = runtime(request)
    return WebSessions(
        rt.ctx.db,
        rt.ctx.clock,
        idle=timedelta(seconds=rt.settings.web_session_idle_seconds),
        maximum=timedelta(seconds=rt.settings.web_session_max_seconds),
        rechecker=rt.oidc_web,
    )


def csrf_token(secret: str, purpose: str = "session") -> str:
    return hashlib.sha256(f"jitgate-csrf\x00{purpose}\x00{secret}".encode()).hexdigest()[:32]


def session_csrf(request: Request) -> str:
    """The CSRF token the forms of this session's pages carry."""
    return csrf_token(request.cookies.get(COOKIE, ""))


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    for key in ("error", "notice"):
        if isinstance(context.get(key), str):
            context[key] = message_text(context[key])
    html = templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def message_text(text: str) -> str:
    """A message as a page shows it. The broker wrote it, but it may quote what was sent (the id
    in a URL): a character that could disguise text is shown as an escape, and a long one is cut."""
    text = printable(text)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
        max_age=max_age,
    )


def back(request: Request, session: WebSession, kind: str, text: str, to: str = "/ui/") -> RedirectResponse:
    """Redirect to ``to`` (a path of the broker's own) with a message for that page."""
    sessions(request).set_flash(session, kind, text)
    return RedirectResponse(to, status_code=303, headers=HEADERS)


def ended() -> RedirectResponse:
    return RedirectResponse("/ui/login?error=session_ended", status_code=303, headers=HEADERS)


def to_login() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303, headers=HEADERS)


def current_session(request: Request) -> WebSession | None:
    return sessions(request).resolve(request.cookies.get(COOKIE))


def check_csrf(request: Request, csrf: str) -> None:
    # The Origin check stands even if a session's token leaks (a page, a log, a shoulder).
    expected = session_csrf(request)
    if not same_origin(request) or not hmac.compare_digest(csrf, expected):
        raise Unauthenticated(STALE_FORM)


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # an opaque origin is never ours
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def pager(request: Request, name: str, listing: Page[Any]) -> dict[str, str]:
    """Links to the older and newer pages of one list on a page, keeping the other lists' place."""
    links = {}
    for rel, param, value in (("older", "cursor", listing.older), ("newer", "before", listing.newer)):
        if value is not None:
            url = request.url.remove_query_params(
                [f"{name}_cursor", f"{name}_before", "notice", "error"]
            ).include_query_params(**{f"{name}_{param}": value})
            links[rel] = f"{url.path}?{url.query}"
    return links


def record_number(text: str) -> int | None:
    """An audit record number from a page link, or None (the newest page) for anything else.

    ``str.isdigit`` alone admits superscripts and 5,000-digit numbers, which crash ``int`` or the
    database; a link the broker wrote holds at most 19 ASCII digits.
    """
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_SEQ_DIGITS):
        return None
    number = int(text)
    return number if number <= MAX_SEQ else None


def flash_context(request: Request, session: WebSession) -> dict[str, Any]:
    """``notice`` and ``error`` for the page: the message the previous action left, shown once."""
    flash = sessions(request).take_flash(session) or {}
    kind = flash.get("kind")
    return {
        "notice": flash.get("text", "") if kind == "notice" else "",
        "error": flash.get("text", "") if kind == "error" else "",
    }
