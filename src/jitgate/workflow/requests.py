"""Access requests: submit (with auto-approval and break-glass), review, cancel."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from jitgate.domain.durations import duration_argument, format_duration, instant_argument
from jitgate.domain.identity import SYSTEM, Identity
from jitgate.domain.lifecycle import check_duration, check_transition, decide_review
from jitgate.domain.model import AccessRequest, Grant, RequestKind, RequestState, Review, Verdict
from jitgate.domain.text import MAX_NAME_LENGTH, checked_text
from jitgate.errors import Conflict, InvalidInput, NotFound, PolicyDenied
from jitgate.policy.decision import (
    auto_approval,
    check_reason,
    check_requester,
    get_role,
    may_approve,
    may_see,
    resolve_targets,
)
from jitgate.policy.step_up import sign_in_details, step_up_needed
from jitgate.store import queries as q
from jitgate.store.ids import new_id
from jitgate.store.paging import DEFAULT_PAGE, Page, count_requests, page_requests
from jitgate.workflow import elevation, grants
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.elevation_views import elevations_by_grant
from jitgate.workflow.pending import check_room
from jitgate.workflow.views import RequestView, fresh_view, request_view

S = RequestState
MAX_SCHEDULE_AHEAD = timedelta(days=90)
START_GRACE = timedelta(minutes=1)


def submit(
    ctx: WorkflowContext,
    identity: Identity,
    *,
    role: str,
    reason: str = "",
    duration: str | timedelta | None = None,
    targets: tuple[str, ...] = (),
    start_at: datetime | None = None,
    requester: str | None = None,
) -> RequestView:
    """Ask for a role. Auto-approved and break-glass requests come back already ACTIVE."""
    with ctx.refusals_audited(identity, "request.create", role=role):
        checked_text("role", role, max_length=MAX_NAME_LENGTH)
        for name in targets:
            checked_text("target", name, max_length=MAX_NAME_LENGTH)
        if requester is not None:
            checked_text("requester", requester, max_length=MAX_NAME_LENGTH)
        checked_text("reason", reason)
        if requester is not None and requester != identity.name:
            raise PolicyDenied(f"{identity.name} cannot request access on behalf of {requester}")
        policy = ctx.policy
        the_role = get_role(policy, role)
        check_requester(identity, the_role)
        if (step_up := step_up_needed(identity, the_role, "request", ctx.clock.now())) is not None:
            raise step_up
        check_reason(the_role, reason)
        length = the_role.duration_default if duration is None else duration_argument(duration)
        check_duration(role, length, min_duration=the_role.min_duration, max_duration=the_role.max_duration)
        chosen = resolve_targets(policy, the_role, targets)
        elevation.check_accounts_exist(ctx, the_role, identity.name, chosen)
        now = ctx.clock.now()
        if start_at is not None:
            start_at = instant_argument(start_at, "start time")
        _check_start(start_at, now)
        rule = auto_approval(identity, the_role, length)
        req = AccessRequest(
            id=new_id("r"),
            kind=RequestKind.ACCESS,
            requester=identity.name,
            role=role,
            targets=chosen,
            reason=reason,
            duration=length,
            state=S.PENDING,
            created_at=now,
            review_deadline=now + the_role.review_timeout,
            start_at=start_at,
            break_glass=the_role.break_glass,
            auto_approved_rule=rule,
        )
        with ctx.transaction() as conn:
            if rule is None and not the_role.break_glass:
                check_room(conn, identity.name, limit=ctx.max_pending_per_requester)
            q.insert_request(conn, req)
            ctx.audit_event(
                conn,
                identity.name,
                "request.created",
                request_id=req.id,
                role=role,
                details={
                    "targets": list(chosen),
                    "duration_s": int(length.total_seconds()),
                    "reason": reason,
                    "start_at": start_at.isoformat() if start_at else None,
                    **sign_in_details(identity),
                },
            )
            grant = None
            planned = None
            if rule is not None or the_role.break_glass:
                grant = grants.activate(ctx, conn, req, now=now, actor=SYSTEM.name)
                if elevation.accounts_of(ctx, the_role, identity.name, chosen):
                    planned = elevations_by_grant(conn, [grant.id])
        # Built from what was just written rather than read back: the transaction is the source.
        view = fresh_view(req, grant, now, planned)
        payload = {"request": req.id, "role": role, "requester": identity.name, "reason": reason}
        if the_role.break_glass:
            ctx.notifier.send("break_glass", {**payload, "approvers": list(the_role.approvers)})
        elif rule is not None:
            ctx.notifier.send("granted", payload)
        else:
            asked = {"targets": list(chosen), "duration": format_duration(length)}
            ctx.notifier.send("approval_needed", {**payload, **asked, "approvers": list(the_role.approvers)})
        ctx.wake_scheduler(next_step(grant) if grant is not None else req.review_deadline)
        if grant is not None and grant.state is S.ACTIVE:
            ctx.wake_scheduler()  # its elevations, if it has any, are queued to be applied
        return view


def next_step(grant: Grant) -> datetime:
    """When the scheduler must next act on a grant: its start if scheduled, else its end."""
    return grant.starts_at if grant.state is S.APPROVED else grant.expires_at


def next_step_of(view: RequestView) -> datetime | None:
    grant = view.get("grant")
    if not grant:
        return None
    key = "starts_at" if grant["state"] == S.APPROVED.value else "expires_at"
    return datetime.fromisoformat(grant[key].replace("Z", "+00:00"))


def _check_start(start_at: datetime | None, now: datetime) -> None:
    if start_at is None:
        return
    if start_at < now - START_GRACE:
        raise InvalidInput("start time is in the past")
    if start_at > now + MAX_SCHEDULE_AHEAD:
        raise InvalidInput("start time is more than 90 days ahead")


def review(
    ctx: WorkflowContext,
    identity: Identity,
    request_id: str,
    *,
    verdict: Verdict,
    comment: str = "",
    via: dict[str, str] | None = None,
) -> RequestView:
    """Approve or deny. Locks the request, then checks its state, then changes it.

    ``via`` says where the decision was made, when not through the API or console (a chat
    interaction: its channel and chat user); it is recorded with the review.
    """
    where = {"details": {"via": via}} if via else {}
    with ctx.refusals_audited(identity, f"review.{verdict.value}", request_id=request_id, **where):
        checked_text("comment", comment)
        now = ctx.clock.now()
        with ctx.transaction() as conn:
            req = locked_visible_request(ctx, conn, identity, request_id)
            role = ctx.policy.role(req.role)
            if role is None:
                raise Conflict(
                    f"role {req.role} is no longer in the policy; request {request_id} cannot proceed"
                )
            outcome = decide_review(
                request_id=req.id,
                state=req.state,
                requester=req.requester,
                reviewer=identity.name,
                reviewer_eligible=may_approve(identity, role),
                reviewer_is_admin=identity.admin,
                prior=q.reviews_of(conn, req.id),
                verdict=verdict,
                approvals_required=role.approvals_required,
                comment=comment,
            )
            # Denying takes access away and never waits for a fresh sign-in; approving may.
            if verdict is Verdict.APPROVE and (step_up := step_up_needed(identity, role, "approve", now)):
                raise step_up
            q.insert_review(conn, req.id, Review(identity.name, verdict, comment, now))
            ctx.audit_event(
                conn,
                identity.name,
                f"review.{'approved' if verdict is Verdict.APPROVE else 'denied'}",
                request_id=req.id,
                role=req.role,
                details={
                    "comment": comment,
                    "approvals": outcome.approvals,
                    **({"via": via} if via else {}),
                    **sign_in_details(identity),
                },
            )
            if outcome.state is S.DENIED:
                q.set_request_state(conn, req.id, expect=S.PENDING, state=S.DENIED, now=now)
                ctx.audit_event(conn, identity.name, "request.denied", request_id=req.id, role=req.role)
            elif outcome.state is S.APPROVED:
                if req.kind is RequestKind.EXTENSION:
                    grants.apply_extension(ctx, conn, req, now=now, actor=identity.name)
                else:
                    grants.activate(ctx, conn, req, now=now, actor=identity.name)
            view = request_view(conn, req.id, now)
        told = {"request": req.id, "by": identity.name, "requester": req.requester, "role": req.role}
        if outcome.state is S.DENIED:
            ctx.notifier.send("denied", {**told, "comment": comment})
        elif outcome.state is S.APPROVED:
            ctx.notifier.send("granted", told)
            ctx.wake_scheduler(None if req.kind is RequestKind.EXTENSION else next_step_of(view))
            if req.kind is not RequestKind.EXTENSION and view["state"] == S.ACTIVE.value:
                ctx.wake_scheduler()  # its elevations, if it has any, are queued to be applied
        return view


def cancel(ctx: WorkflowContext, identity: Identity, request_id: str) -> RequestView:
    """The requester withdraws a request that is pending or scheduled but not yet started."""
    with ctx.refusals_audited(identity, "request.cancel", request_id=request_id):
        now = ctx.clock.now()
        with ctx.transaction(parks_audit=True) as conn:
            req = locked_visible_request(ctx, conn, identity, request_id)
            if req.requester != identity.name:
                raise PolicyDenied(f"only {req.requester} can cancel request {request_id}")
            check_transition(f"request {req.id}", req.state, S.CANCELLED)
            if req.state is S.APPROVED:
                grant = q.grant_of_request(conn, req.id)
                if grant is not None:
                    q.set_grant_state(conn, grant.id, expect=S.APPROVED, state=S.CANCELLED)
            q.set_request_state(conn, req.id, expect=req.state, state=S.CANCELLED, now=now)
            ctx.audit_event(conn, identity.name, "request.cancelled", request_id=req.id, role=req.role)
            return request_view(conn, req.id, now)


def locked_visible_request(
    ctx: WorkflowContext, conn: Connection, identity: Identity, request_id: str
) -> AccessRequest:
    """The request, row-locked, if ``identity`` may know of it; to anyone else the same
    ``NotFound`` as for an id that does not exist, so ids tell outsiders nothing."""
    req = q.get_request(conn, request_id, lock=True)
    if req is None or not may_see(identity, req.requester, ctx.policy.role(req.role)):
        raise NotFound(f"no request {request_id}")
    return req


def request_view_for(ctx: WorkflowContext, request_id: str) -> RequestView:
    with ctx.db.read() as conn:
        return request_view(conn, request_id, ctx.clock.now())


def visible_request_view(ctx: WorkflowContext, identity: Identity, request_id: str) -> RequestView:
    """A request with its reviews and grant, if ``identity`` may see it; else ``NotFound``.

    Visibility is decided on the request row alone, before anything else is read, so an unseen
    request costs what a missing one does: the time of the answer tells nothing either.
    """
    with ctx.db.read() as conn:
        visible_request(ctx, conn, identity, request_id)
        return request_view(conn, request_id, ctx.clock.now())


def visible_request(
    ctx: WorkflowContext, conn: Connection, identity: Identity, request_id: str
) -> AccessRequest:
    """The request if ``identity`` may know of it (unlocked, for reading); else ``NotFound``."""
    req = q.get_request(conn, request_id)
    if req is None or not may_see(identity, req.requester, ctx.policy.role(req.role)):
        raise NotFound(f"no request {request_id}")
    return req


def reviewable_count(ctx: WorkflowContext, identity: Identity) -> int:
    """How many requests wait in ``identity``'s review queue (``visible_requests(reviewable=True)``)."""
    roles = [r.name for r in ctx.policy.roles if may_approve(identity, r)]
    if not roles:
        return 0
    with ctx.db.read() as conn:
        return count_requests(conn, states=(S.PENDING,), roles=roles, not_requester=identity.name)


def visible_requests(
    ctx: WorkflowContext,
    identity: Identity,
    *,
    mine: bool,
    reviewable: bool,
    states: tuple[RequestState, ...],
    limit: int = DEFAULT_PAGE,
    older_than: str | None = None,
    newer_than: str | None = None,
) -> Page[AccessRequest]:
    """One page (newest first) of the requests this identity may see: their own, and those they
    could review (admins see all). ``reviewable`` is the review queue: pending, not their own."""
    with ctx.db.read() as conn:

        def page(**filters: Any) -> Page[AccessRequest]:
            return page_requests(conn, limit=limit, older_than=older_than, newer_than=newer_than, **filters)

        if mine:
            return page(requester=identity.name, states=states)
        if identity.admin and not reviewable:
            return page(states=states)
        roles = [r.name for r in ctx.policy.roles if may_approve(identity, r)]
        if reviewable:
            return page(states=(S.PENDING,), roles=roles, not_requester=identity.name)
        return page(states=states, roles=roles, or_requester=identity.name)
