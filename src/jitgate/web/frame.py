"""What every access page shows around its content: who is signed in, the sign-out form's token,
how many requests wait in their inbox, and the message the previous action left (shown once)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from jitgate.auth.sessions import WebSession
from jitgate.errors import JitgateError
from jitgate.web.pages import flash_context, page, runtime, session_csrf
from jitgate.web.refusals import form_status
from jitgate.workflow import requests


def frame(request: Request, session: WebSession, *, refresh: str = "", flash: bool = True) -> dict[str, Any]:
    """The base template's context. ``refresh`` is the page's own address, which the countdown
    script reloads once when a grant on it ends; ``flash=False`` leaves the message for later."""
    who = session.identity
    out: dict[str, Any] = {
        "who": who,
        "csrf": session_csrf(request),
        "inbox_count": requests.reviewable_count(runtime(request).ctx, who),
        "refresh": refresh,
        "notice": "",
        "error": "",
    }
    if flash:
        out.update(flash_context(request, session))
    return out


def missing(request: Request, session: WebSession, exc: JitgateError) -> HTMLResponse:
    """A page that cannot be shown (an unknown or unseen id, a cursor the broker did not write)."""
    context = frame(request, session)
    context["error"] = exc.message
    return page("missing.html", status=form_status(exc), title="not found", **context)
