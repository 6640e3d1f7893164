"""Approvals from chat: the endpoint Slack posts clicks on the broker's buttons to.

The body is read raw, before any form parsing, because Slack's signature covers the bytes as
sent; ``BodyLimit`` (``app.py``) refuses a body over 64 KiB with 413 before it is read whole.
A request that Slack did not sign counts as a failed authentication of its source address
(``auth/throttle.py``), like a bad API token: failures are not audited one by one, throttling is.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from jitgate.api.deps import peer, runtime
from jitgate.errors import NotFound, Unauthenticated
from jitgate.workflow.auth_failures import audit_throttled

router = APIRouter(prefix="/api/v1/chat")
SLACK_INTERACTIONS_PATH = "/api/v1/chat/slack/interactions"


@router.post("/slack/interactions", response_model=None)
async def slack_interactions(request: Request) -> Response:
    """Slack's interactivity request URL: a click on Approve or Deny in a jitgate message.

    Signed by Slack (``X-Slack-Signature``, ``X-Slack-Request-Timestamp``); 401 if not, or if the
    same request was acted on before; 200 with a Slack message otherwise, refusals included.
    """
    rt = runtime(request)
    approvals = rt.slack
    if approvals is None:
        raise NotFound("approvals from Slack are not configured (JITGATE_SLACK_SIGNING_SECRET)")
    source = peer(request)
    rt.auth_throttle.check(source)
    body = await request.body()
    try:
        answer = await run_in_threadpool(
            approvals.interact,
            body,
            timestamp=request.headers.get("x-slack-request-timestamp"),
            signature=request.headers.get("x-slack-signature"),
        )
    except Unauthenticated:
        started = rt.auth_throttle.failed(source)
        if started is not None:
            await run_in_threadpool(audit_throttled, rt.ctx, rt.auth_throttle, started, "slack")
        raise
    if answer is None:
        return Response(status_code=200)
    return JSONResponse(answer)
