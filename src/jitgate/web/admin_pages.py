"""The admin pages: every grant in force, the revocations still to be done and the gateway's
sessions, with the forms that end them. Users, tokens and keys are in ``admin_accounts.py``.

Admins only: anyone else gets a 403 page, and a form they post does nothing. Every form is
checked in this order: a session, its CSRF token, an admin, and then the workflow call, which
checks again and audits; the page it came from shows what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from jitgate.auth.sessions import WebSession
from jitgate.domain.durations import format_duration
from jitgate.domain.identity import Identity
from jitgate.domain.model import RequestState
from jitgate.errors import InvalidInput, JitgateError, Unauthenticated
from jitgate.store.paging import page_grants, page_pending_revocations
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
from jitgate.workflow import grants, sessions
from jitgate.workflow.views import grant_json, revocation_json

router = APIRouter(prefix="/ui", include_in_schema=False)
GRANTS = "/ui/admin/grants"
SESSIONS = "/ui/admin/sessions"
ONLY_ADMINS = "only admins may use the admin pages"
SECTIONS = (
    ("/ui/admin/grants", "Active grants", "every grant in force or scheduled; revoke one"),
    ("/ui/admin/revocations", "Pending revocations", "credentials still to be taken back, and why not yet"),
    ("/ui/admin/users", "Users", "local users and service accounts: groups, admin, disabled"),
    ("/ui/admin/tokens", "API tokens", "every user's tokens (never their secrets); revoke one"),
    ("/ui/admin/keys", "SSH keys", "keys registered for the gateway; remove one"),
    ("/ui/admin/sessions", "Gateway sessions", "live sessions first; end one"),
    ("/ui/admin/console", "Console sessions", "who is signed in to the console; sign a person out"),
)


def forbidden(request: Request, session: WebSession) -> Response:
    return page(
        "admin.html",
        status=403,
        title="admin",
        who=session.identity,
        csrf=session_csrf(request),
        sections=[],
        **{**flash_context(request, session), "error": ONLY_ADMINS},
    )


Listing = Callable[[Identity], dict[str, Any]]


def admin_page(request: Request, name: str, title: str, listing: Listing) -> Response:
    """Render ``name`` for a signed-in admin with what ``listing`` reads for them; a cursor that
    is not one of the broker's is a 400 with the page empty."""
    found = current_session(request)
    if found is None:
        return to_login()
    if not found.identity.admin:
        return forbidden(request, found)
    shown: dict[str, Any] = {"title": title, "who": found.identity, "csrf": session_csrf(request)}
    messages = flash_context(request, found)
    try:
        listed = listing(found.identity)
    except InvalidInput as exc:
        return page(name, status=400, **shown, **{**messages, "error": exc.message})
    return page(name, **shown, **listed, **messages)


def admin_form(request: Request, csrf: str, to: str) -> WebSession | Response:
    """The admin's session posting a genuine form, or the response refusing it (nothing done)."""
    session = current_session(request)
    if session is None:
        return ended()
    try:
        check_csrf(request, csrf)
    except Unauthenticated as exc:
        return back(request, session, "error", exc.message, to=to)
    if not session.identity.admin:
        return forbidden(request, session)
    return session


def done(request: Request, session: WebSession, to: str, call: Callable[[], str]) -> Response:
    """Run a workflow call and go back to ``to`` with what it says, or with why it was refused."""
    try:
        text = call()
    except JitgateError as exc:
        return back(request, session, "error", exc.message, to=to)
    return back(request, session, "notice", text, to=to)


@router.get("/admin")
def admin_index(request: Request) -> Response:
    links = [{"href": href, "name": name, "what": what} for href, name, what in SECTIONS]
    return admin_page(request, "admin.html", "admin", lambda _: {"sections": links})


@router.get("/admin/grants")
def admin_grants(request: Request) -> Response:
    ctx = runtime(request).ctx
    params = request.query_params

    def listing(_: Identity) -> dict[str, Any]:
        now = ctx.clock.now()
        with ctx.db.read() as conn:
            found = page_grants(
                conn,
                states=(RequestState.ACTIVE, RequestState.APPROVED),
                limit=WEB_PAGE,
                older_than=params.get("grants_cursor"),
                newer_than=params.get("grants_before"),
            )
        shown = []
        for grant in found.items:
            item = grant_json(grant, now)
            item["left"] = format_duration(grant.time_left(now)) if grant.is_active_at(now) else ""
            shown.append(item)
        return {"grants": shown, "grants_pages": pager(request, "grants", found)}

    return admin_page(request, "admin_grants.html", "active grants", listing)


@router.post("/admin/grants/{grant_id}/revoke")
def admin_revoke_grant(
    request: Request, grant_id: str, csrf: str = Form(""), comment: str = Form("", max_length=2000)
) -> Response:
    found = admin_form(request, csrf, GRANTS)
    if isinstance(found, Response):
        return found
    ctx, who = runtime(request).ctx, found.identity

    def revoke() -> str:
        grants.revoke(ctx, who, grant_id, comment=comment.strip() or "revoked from the admin pages")
        return f"grant {grant_id} revoked"

    return done(request, found, GRANTS, revoke)


@router.get("/admin/revocations")
def admin_revocations(request: Request) -> Response:
    ctx = runtime(request).ctx
    params = request.query_params

    def listing(_: Identity) -> dict[str, Any]:
        with ctx.db.read() as conn:
            found = page_pending_revocations(
                conn,
                limit=WEB_PAGE,
                older_than=params.get("queue_cursor"),
                newer_than=params.get("queue_before"),
            )
        rows = [revocation_json(row) for row in found.items]
        return {"revocations": rows, "queue_pages": pager(request, "queue", found)}

    return admin_page(request, "admin_revocations.html", "pending revocations", listing)


@router.get("/admin/sessions")
def admin_sessions(request: Request) -> Response:
    ctx = runtime(request).ctx
    params = request.query_params

    def listing(identity: Identity) -> dict[str, Any]:
        now = ctx.clock.now()
        shown: dict[str, Any] = {}
        for name, active in (("live", True), ("all", False)):
            found = sessions.session_page(
                ctx,
                identity,
                active=active,
                user="*",
                limit=WEB_PAGE,
                older_than=params.get(f"{name}_cursor"),
                newer_than=params.get(f"{name}_before"),
            )
            shown[name] = [sessions.session_json(row, now) for row in found.items]
            shown[f"{name}_pages"] = pager(request, name, found)
        return shown

    return admin_page(request, "admin_sessions.html", "gateway sessions", listing)


@router.post("/admin/sessions/{session_id}/kill")
def admin_kill_session(
    request: Request, session_id: str, csrf: str = Form(""), reason: str = Form("", max_length=200)
) -> Response:
    found = admin_form(request, csrf, SESSIONS)
    if isinstance(found, Response):
        return found
    ctx, who = runtime(request).ctx, found.identity

    def kill() -> str:
        sessions.request_kill(ctx, who, session_id, reason=reason)
        return f"session {session_id} is being ended"

    return done(request, found, SESSIONS, kill)
