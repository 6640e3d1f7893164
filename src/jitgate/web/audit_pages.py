"""The audit trail in the console: everyone's records for admins and auditors, one's own otherwise.

Filtered by actor, role, action (a noun's every action with ``grant.``), request, grant and time,
newest first, with older and newer pages that keep the filters. Who sees what is decided once,
by ``audit.query.visible_actor``, as for ``GET /api/v1/audit``: an actor named in the URL by
someone who reads only their own records is ignored.

The chain's verdict is ``GET /api/v1/audit/verify``'s (``verify_anchored``). It reads every
record, seconds on a long log, so the page does not run it on every view: admins and auditors
press "Verify now" (a form, so another site cannot make browsers start it), which starts one
verification at a time per broker process (the API's included), and the page shows the last
verdict with when and by whom it was found.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from jitgate.audit.canonical import iso_utc
from jitgate.audit.query import AuditEvent, query, reads_everyone, visible_actor
from jitgate.audit.verify import VerifyResult, anchors, verify_anchored
from jitgate.errors import InvalidInput, JitgateError, Unauthenticated
from jitgate.runtime import Runtime
from jitgate.web.audit_filters import FILTERS, AuditFilters, parse_filters, readable, typed
from jitgate.web.pages import (
    WEB_AUDIT_PAGE,
    back,
    check_csrf,
    current_session,
    ended,
    flash_context,
    page,
    runtime,
    session_csrf,
    to_login,
)

router = APIRouter(prefix="/ui", include_in_schema=False)
log = logging.getLogger("jitgate.web")
AUDIT_PAGE = "/ui/audit"


@dataclass(frozen=True, slots=True)
class Verdict:
    result: VerifyResult
    at: datetime
    by: str


class Verdicts:
    """The last verdict found by this broker process, and the one verification running.

    A verification runs on its own thread: on a long log it takes longer than a browser (or a
    proxy in front of the broker) waits for a page.
    """

    def __init__(self) -> None:
        self.last: Verdict | None = None
        self.started: Verdict | None = None
        """Who started the verification running now, and when (its ``result`` is not one yet)."""
        self._thread: threading.Thread | None = None

    def start(self, rt: Runtime, by: str) -> bool:
        """Start verifying the chain as ``GET /api/v1/audit/verify`` does; False if one is running
        (this one or the API's: they take turns on ``rt.verifying``)."""
        if not rt.verifying.acquire(blocking=False):
            return False
        self.started = Verdict(VerifyResult(False, 0, None, "", "verifying"), rt.ctx.clock.now(), by)
        self._thread = threading.Thread(target=self._verify, args=(rt, by), name="audit-verify", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: float) -> None:
        """Wait for the running verification, if any, to finish (for tests and shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _verify(self, rt: Runtime, by: str) -> None:
        try:
            self.last = Verdict(_verdict_of(rt), rt.ctx.clock.now(), by)
        finally:
            self.started = None
            rt.verifying.release()


def _verdict_of(rt: Runtime) -> VerifyResult:
    try:
        with rt.ctx.db.read() as conn:
            return verify_anchored(conn, rt.ctx.audit.public_key, **anchors(rt.settings))
    except JitgateError as exc:
        return VerifyResult(False, 0, None, f"could not verify: {exc.message}", "unverified")
    except Exception:  # on its own thread: any failure must become the verdict the page shows
        log.exception("verifying the audit chain failed")
        return VerifyResult(False, 0, None, "could not verify: see the broker's log", "unverified")


_CREATING = threading.Lock()


def verdicts(request: Request) -> Verdicts:
    state = request.app.state
    with _CREATING:
        found: Verdicts | None = getattr(state, "audit_verdicts", None)
        if found is None:
            found = state.audit_verdicts = Verdicts()
    return found


@router.get("/audit")
def audit(request: Request) -> Response:
    found = current_session(request)
    if found is None:
        return to_login()
    who = found.identity
    everyone = reads_everyone(who)
    shown: dict[str, Any] = {
        "title": "audit",
        "who": who,
        "csrf": session_csrf(request),
        "everyone": everyone,
        "typed": typed(request.query_params),
        "can_verify": everyone,
        "verdict": _verdict_view(verdicts(request).last) if everyone else None,
        "verifying": _verdict_view(verdicts(request).started) if everyone else None,
        "filtered": any(request.query_params.get(name) for name in FILTERS),
        **flash_context(request, found),
    }
    if not everyone:
        shown["typed"]["actor"] = who.name
    try:
        filters = parse_filters(request.query_params)
        events, older, newer = _records(request, filters, actor=visible_actor(who, filters.actor))
    except InvalidInput as exc:  # a filter that cannot be used, or one no record could match (a NUL)
        return page("audit.html", status=400, events=[], pages={}, **{**shown, "error": exc.message})
    pages = {}
    for rel, name, seq in (("older", "before", older), ("newer", "after", newer)):
        if seq is not None:
            url = request.url.remove_query_params(["before", "after"]).include_query_params(**{name: seq})
            pages[rel] = f"{url.path}?{url.query}"
    if filters.before is not None or filters.after is not None:
        url = request.url.remove_query_params(["before", "after"])
        pages["newest"] = f"{url.path}?{url.query}" if url.query else url.path
    rows = [{**event.to_json(), "details": readable(event.details)} for event in events]
    return page("audit.html", events=rows, pages=pages, **shown)


def _records(
    request: Request, filters: AuditFilters, *, actor: str | None
) -> tuple[list[AuditEvent], int | None, int | None]:
    """One page of records newest first, and the record numbers the older and newer pages start
    before and after (None where there is no such page)."""
    args = {**filters.query_args(), "actor": actor}
    with runtime(request).ctx.db.read() as conn:
        if filters.after is not None:
            rows = query(conn, **args, after_seq=filters.after, limit=WEB_AUDIT_PAGE + 1)
            events = list(reversed(rows[:WEB_AUDIT_PAGE]))
            more_newer = len(rows) > WEB_AUDIT_PAGE
            return events, events[-1].seq if events else None, events[0].seq if more_newer else None
        rows = query(conn, **args, before_seq=filters.before, limit=WEB_AUDIT_PAGE + 1, newest_first=True)
    events = rows[:WEB_AUDIT_PAGE]
    older = events[-1].seq if len(rows) > WEB_AUDIT_PAGE else None
    return events, older, events[0].seq if filters.before is not None and events else None


def _verdict_view(verdict: Verdict | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return {**verdict.result.to_json(), "at": iso_utc(verdict.at), "by": verdict.by}


@router.post("/audit/verify")
def verify_now(request: Request, csrf: str = Form("")) -> Response:
    session = current_session(request)
    if session is None:
        return ended()
    who = session.identity
    try:
        check_csrf(request, csrf)
    except Unauthenticated as exc:
        return back(request, session, "error", exc.message, to=AUDIT_PAGE)
    if not reads_everyone(who):
        return page(
            "audit.html",
            status=403,
            title="audit",
            who=who,
            csrf=session_csrf(request),
            events=[],
            pages={},
            typed={},
            error=f"{who.name} may not verify the audit log",
        )
    if not verdicts(request).start(runtime(request), who.name):
        return back(request, session, "error", "a verification is already running", to=AUDIT_PAGE)
    return back(request, session, "notice", "verification started; reload for its verdict", to=AUDIT_PAGE)
