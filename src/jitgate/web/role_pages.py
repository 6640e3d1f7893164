"""The role catalogue: each role the signed-in user may ask for or approve, explained from the
policy (targets, what it opens, durations, who approves, auto-approval, reason rules)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from jitgate.policy.catalogue import catalogue
from jitgate.web.frame import frame
from jitgate.web.pages import current_session, page, runtime, to_login

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/roles")
def roles(request: Request) -> Response:
    found = current_session(request)
    if found is None:
        return to_login()
    entries = catalogue(runtime(request).ctx.policy, found.identity)
    return page(
        "roles.html",
        title="roles",
        requestable=[e for e in entries if e.may_request],
        approvable=[e for e in entries if e.may_approve and not e.may_request],
        others=[e for e in entries if not e.may_request and not e.may_approve],
        **frame(request, found),
    )
