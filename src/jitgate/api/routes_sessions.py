"""Sessions through the SSH gateway over HTTP: list and show them, download their recordings,
and end a live one.

Holders see their own sessions; admins and the ``auditors`` group see everyone's. Only admins
and the holder may end one. A session someone may not see is "not found", like a missing one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import Field

from jitgate.api.deps import Caller, Ctx, RuntimeDep
from jitgate.api.routes_access import CursorParam, Limit, _link_pages
from jitgate.api.schemas import Body
from jitgate.errors import NotFound
from jitgate.workflow import sessions

router = APIRouter(prefix="/api/v1")
NO_STORE = {"Cache-Control": "no-store"}
ASCIICAST = "application/x-asciicast"
NDJSON = "application/x-ndjson"


class KillBody(Body):
    reason: str = Field(min_length=1, max_length=500, examples=["INC-42 contained"])


@router.get("/sessions")
def list_sessions(
    request: Request,
    response: Response,
    identity: Caller,
    ctx: Ctx,
    *,
    active: bool = False,
    user: str | None = Query(default=None, max_length=128),
    limit: Limit = 100,
    cursor: CursorParam = None,
    before: CursorParam = None,
) -> list[dict[str, Any]]:
    """Your sessions, newest first (``active=true``: only live ones); admins and auditors may pass
    ``user=NAME``, or ``user=*`` for everyone's. One page; the ``Link`` header leads to the others."""
    page = sessions.session_page(
        ctx, identity, active=active, user=user, limit=limit, older_than=cursor, newer_than=before
    )
    _link_pages(request, response, page)
    now = ctx.clock.now()
    return [sessions.session_json(row, now) for row in page.items]


@router.get("/sessions/{session_id}")
def get_session(session_id: str, identity: Caller, ctx: Ctx) -> dict[str, Any]:
    return sessions.session_json(sessions.get_session(ctx, identity, session_id), ctx.clock.now())


@router.get(
    "/sessions/{session_id}/recording",
    response_class=FileResponse,
    responses={200: {"content": {ASCIICAST: {}, NDJSON: {}}}},
)
def get_recording(
    session_id: str, identity: Caller, rt: RuntimeDep, channel: int | None = Query(default=None, ge=0)
) -> FileResponse:
    """A recording as the gateway wrote it: an asciicast for a shell, JSON lines for anything else.

    By default the session's first shell recording, else its first recording."""
    row = sessions.get_session(rt.ctx, identity, session_id)
    facts = sessions.recording_of(row, channel)
    path = sessions.recording_path(rt.settings.recordings_dir, row, channel)
    if not path.is_file():
        raise NotFound(f"the recording of session {session_id} is not on this broker")
    kind = facts.get("kind")
    media = ASCIICAST if kind == sessions.SHELL else NDJSON
    suffix = "cast" if kind == sessions.SHELL else "ndjson"
    return FileResponse(
        path,
        media_type=media,
        filename=f"{session_id}-{facts.get('channel', 0)}.{suffix}",
        headers=NO_STORE,
    )


@router.post("/sessions/{session_id}/kill")
def kill_session(session_id: str, body: KillBody, identity: Caller, ctx: Ctx) -> dict[str, Any]:
    """End a live session (admins, or its holder): its gateway closes it within a second."""
    row = sessions.request_kill(ctx, identity, session_id, reason=body.reason)
    return sessions.session_json(row, ctx.clock.now())
