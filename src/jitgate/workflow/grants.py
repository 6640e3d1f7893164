"""Grants: activation from an approved request, early revocation, extension, and the end of a grant.

Ending a grant (by expiry or revocation) is one transaction: the grant's state, its request's state,
the revocation work for every credential issued under it, and the audit record all commit together,
so no revocation can be lost between them. It commits even while the audit log is broken, with its
records parked (``WorkflowContext.transaction(parks_audit=True)``); activating and extending do not.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from jitgate.domain.durations import duration_argument, format_duration
from jitgate.domain.identity import SYSTEM, Identity
from jitgate.domain.lifecycle import check_extension, check_transition, grant_window
from jitgate.domain.model import AccessRequest, Grant, GrantEnd, RequestKind, RequestState
from jitgate.domain.text import checked_text
from jitgate.errors import ElevationRefused, InvalidInput, NotFound, PolicyDenied
from jitgate.policy.decision import auto_approval, check_reason, check_requester, may_request, may_see
from jitgate.policy.step_up import sign_in_details, step_up_needed
from jitgate.store import accounts, issuance
from jitgate.store import queries as q
from jitgate.store.ids import new_id
from jitgate.workflow import elevation
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.pending import check_room
from jitgate.workflow.views import GrantView, RequestView, grant_view, request_view

S = RequestState
ISSUING_GRACE = timedelta(seconds=30)
"""How long a credential still being created at its target is left to its issue when its grant
ends: the issue queues the revocation again the moment it finishes (or fails), and a revocation
that ran before the login existed would find nothing, be recorded, and have to run and be recorded
again. Only an issue whose broker died waits the whole grace; its secret died with it."""


def activate(
    ctx: WorkflowContext, conn: Connection, req: AccessRequest, *, now: datetime, actor: str
) -> Grant:
    """Turn an approved request into a grant: active now, or scheduled for its requested start.

    Refused if the requester may no longer request the role (taken out of its requesters' groups
    while the request waited for review): the approver approved a request, not a person's future.
    """
    user = accounts.get_user(conn, req.requester)  # read once: enabled, and still in the groups
    if user is not None and user.disabled:
        # Disabling cancels open requests; this holds for one made in another process's cache window.
        raise PolicyDenied(f"user {req.requester} is disabled")
    if (why := _ineligible(ctx, req.requester, req.role, user)) is not None:
        raise PolicyDenied(f"{why}; request {req.id} cannot be granted")
    starts_at, expires_at = grant_window(now=now, start_at=req.start_at, duration=req.duration)
    state = S.ACTIVE if starts_at <= now else S.APPROVED
    check_transition(f"request {req.id}", req.state, state)
    q.set_request_state(conn, req.id, expect=S.PENDING, state=state, now=now)
    grant = Grant(
        id=new_id("g"),
        request_id=req.id,
        holder=req.requester,
        role=req.role,
        targets=req.targets,
        starts_at=starts_at,
        expires_at=expires_at,
        state=state,
        break_glass=req.break_glass,
    )
    q.insert_grant(conn, grant)
    details = {
        "starts_at": starts_at.isoformat(),
        "expires_at": expires_at.isoformat(),
        "targets": list(req.targets),
        "approved_by": actor,
        "auto_rule": req.auto_approved_rule,
        "break_glass": req.break_glass,
    }
    action = "grant.activated" if state is S.ACTIVE else "grant.scheduled"
    ctx.audit_event(conn, actor, action, request_id=req.id, grant_id=grant.id, role=req.role, details=details)
    if state is S.ACTIVE:
        elevation.plan(ctx, conn, grant)
    return grant


def start_scheduled(ctx: WorkflowContext, conn: Connection, grant: Grant, *, now: datetime) -> bool:
    """A scheduled grant whose start has come becomes active (once, whoever gets there first).

    Unless its holder may no longer request the role, or the policy maps them to no account to
    elevate any more: then it is revoked instead of started, so windows lined up in advance (up to
    90 days, outside the pending cap) do not outlive a group change or the role's removal from the
    policy, nor stop every other grant due to start with them.
    """
    why = _no_longer_eligible(ctx, conn, grant.holder, grant.role) or elevation.unmapped(ctx, grant)
    if why is not None:
        end(ctx, conn, grant, reason=GrantEnd.REVOKED, now=now, actor=SYSTEM.name, comment=why)
        return False
    if not q.set_grant_state(conn, grant.id, expect=S.APPROVED, state=S.ACTIVE):
        return False
    q.set_request_state(conn, grant.request_id, expect=S.APPROVED, state=S.ACTIVE, now=now)
    ctx.audit_event(
        conn,
        SYSTEM.name,
        "grant.started",
        request_id=grant.request_id,
        grant_id=grant.id,
        role=grant.role,
        details={"expires_at": grant.expires_at.isoformat()},
    )
    elevation.plan(ctx, conn, grant)
    return True


def _no_longer_eligible(ctx: WorkflowContext, conn: Connection, holder: str, role_name: str) -> str | None:
    """Why ``holder`` may not (any more) have ``role_name``, judged by their groups as stored now."""
    return _ineligible(ctx, holder, role_name, accounts.get_user(conn, holder))


def _ineligible(
    ctx: WorkflowContext, holder: str, role_name: str, user: accounts.UserRow | None
) -> str | None:
    """``_no_longer_eligible`` with the holder's ``users`` row already read (None: not a local user)."""
    role = ctx.policy.role(role_name)
    if role is None:
        return f"role {role_name} is no longer in the policy"
    if user is None:
        return None  # an OIDC identity: its groups come with each of its tokens, not known here
    if not may_request(user.identity("stored"), role):
        return f"{holder} may no longer request role {role_name}"
    return None


def end(
    ctx: WorkflowContext,
    conn: Connection,
    grant: Grant,
    *,
    reason: GrantEnd,
    now: datetime,
    actor: str,
    comment: str = "",
) -> bool:
    """End a grant once: state, request, credentials' revocation work and audit in one transaction."""
    state = S.EXPIRED if reason is GrantEnd.EXPIRED else S.REVOKED
    check_transition(f"grant {grant.id}", grant.state, state)
    if not q.end_grant(conn, grant.id, expect=(S.ACTIVE, S.APPROVED), state=state, reason=reason, now=now):
        return False  # someone else (another replica, a concurrent revoke) ended it first
    q.set_request_state(conn, grant.request_id, expect=grant.state, state=state, now=now)
    queued = 0
    for cred in issuance.credentials_of_grant(conn, grant.id):
        provider = ctx.providers.get(cred["kind"])
        if provider is not None and not provider.revocable and not cred["record"].get("elevation"):
            # Dies by itself; marking it revoked puts it on the revocation list until its end.
            issuance.mark_credential_revoked(conn, cred["id"], now)
            continue
        issuance.enqueue_revocation(
            conn,
            credential_id=cred["id"],
            grant_id=grant.id,
            target=cred["target"],
            kind=cred["kind"],
            handle=cred["handle"],
            now=now,
            not_before=now + ISSUING_GRACE if cred["state"] == "issuing" else None,
            action=issuance.WITHDRAW if cred["record"].get("elevation") else issuance.REVOKE,
        )
        queued += 1
    for ext in q.pending_extensions(conn, grant.id):
        q.set_request_state(conn, ext.id, expect=S.PENDING, state=S.CANCELLED, now=now)
        ctx.audit_event(
            conn,
            SYSTEM.name,
            "request.cancelled",
            request_id=ext.id,
            grant_id=grant.id,
            role=ext.role,
            details={"why": f"grant {grant.id} ended"},
        )
    details: dict[str, object] = {"revocations_queued": queued, "expires_at": grant.expires_at.isoformat()}
    if reason is GrantEnd.EXPIRED:
        details["lag_ms"] = round((now - grant.expires_at).total_seconds() * 1000, 1)
    if comment:
        details["comment"] = comment
    ctx.audit_event(
        conn,
        actor,
        f"grant.{state.value.lower()}",
        request_id=grant.request_id,
        grant_id=grant.id,
        role=grant.role,
        details=details,
    )
    return True


def locked_visible_grant(ctx: WorkflowContext, conn: Connection, identity: Identity, grant_id: str) -> Grant:
    """The grant, row-locked, if ``identity`` may know of it; to anyone else the same ``NotFound``
    as for an id that does not exist."""
    grant = q.get_grant(conn, grant_id, lock=True)
    if grant is None or not may_see(identity, grant.holder, ctx.policy.role(grant.role)):
        raise NotFound(f"no grant {grant_id}")
    return grant


def visible_grant_view(ctx: WorkflowContext, identity: Identity, grant_id: str) -> GrantView:
    """A grant with its pending revocations, if ``identity`` may see it; else ``NotFound``.

    Decided on the grant row alone, before anything else is read: an unseen grant costs what a
    missing one does.
    """
    with ctx.db.read() as conn:
        visible_grant(ctx, conn, identity, grant_id)
        return grant_view(conn, grant_id, ctx.clock.now())


def visible_grant(ctx: WorkflowContext, conn: Connection, identity: Identity, grant_id: str) -> Grant:
    """The grant if ``identity`` may know of it (unlocked, for reading); else ``NotFound``."""
    grant = q.get_grant(conn, grant_id)
    if grant is None or not may_see(identity, grant.holder, ctx.policy.role(grant.role)):
        raise NotFound(f"no grant {grant_id}")
    return grant


def revoke(ctx: WorkflowContext, identity: Identity, grant_id: str, *, comment: str = "") -> GrantView:
    """End a grant early: by its holder, an approver of its role, or an admin."""
    with ctx.refusals_audited(identity, "grant.revoke", grant_id=grant_id):
        checked_text("comment", comment)
        now = ctx.clock.now()
        with ctx.transaction(parks_audit=True) as conn:
            # Whoever may see a grant may revoke it: its holder, an approver of its role, an admin.
            grant = locked_visible_grant(ctx, conn, identity, grant_id)
            end(ctx, conn, grant, reason=GrantEnd.REVOKED, now=now, actor=identity.name, comment=comment)
            view = grant_view(conn, grant_id, now)
        ctx.wake_scheduler()  # after the commit, so the revocation loop finds the queued work
        ctx.notifier.send("revoked", {"grant": grant_id, "holder": grant.holder, "by": identity.name})
        return view


def extend(
    ctx: WorkflowContext, identity: Identity, grant_id: str, *, duration: str | timedelta, reason: str = ""
) -> RequestView:
    """Ask to lengthen an active grant. Goes through the role's approval rule like any request;
    the total length stays within the role's maximum."""
    with ctx.refusals_audited(identity, "grant.extend", grant_id=grant_id):
        checked_text("reason", reason)
        extra = duration_argument(duration)
        now = ctx.clock.now()
        with ctx.transaction() as conn:
            grant = locked_visible_grant(ctx, conn, identity, grant_id)
            if identity.name != grant.holder:
                raise PolicyDenied(f"only {grant.holder} can extend grant {grant_id}")
            role = ctx.policy.role(grant.role)
            if role is None:
                raise PolicyDenied(
                    f"role {grant.role} is no longer in the policy; grant {grant_id} cannot grow"
                )
            # Only while the holder may still ask for the role: else leaving its requesters' group
            # would leave the grant to be stretched to the role's maximum, often automatically.
            check_requester(identity, role)
            if (step_up := step_up_needed(identity, role, "request", now)) is not None:
                raise step_up
            if (why := _no_longer_eligible(ctx, conn, grant.holder, grant.role)) is not None:
                raise PolicyDenied(f"{why}; grant {grant_id} cannot grow")
            check_reason(role, reason)
            new_expiry = check_extension(
                grant_id=grant.id,
                role=role.name,
                state=grant.state,
                starts_at=grant.starts_at,
                expires_at=grant.expires_at,
                extra=extra,
                max_duration=role.max_duration,
                now=now,
            )
            rule = auto_approval(identity, role, new_expiry - grant.starts_at)
            if rule is None:
                check_room(conn, identity.name, limit=ctx.max_pending_per_requester)
            req = AccessRequest(
                id=new_id("r"),
                kind=RequestKind.EXTENSION,
                requester=identity.name,
                role=role.name,
                targets=grant.targets,
                reason=reason,
                duration=extra,
                state=S.PENDING,
                created_at=now,
                review_deadline=min(now + role.review_timeout, grant.expires_at),
                extends_grant_id=grant.id,
                auto_approved_rule=rule,
            )
            q.insert_request(conn, req)
            ctx.audit_event(
                conn,
                identity.name,
                "request.created",
                request_id=req.id,
                grant_id=grant.id,
                role=role.name,
                details={
                    "kind": "extension",
                    "extra": format_duration(extra),
                    "reason": reason,
                    **sign_in_details(identity),
                },
            )
            if rule is not None:
                apply_extension(ctx, conn, req, now=now, actor=SYSTEM.name)
            view = request_view(conn, req.id, now)
        if rule is None:
            ctx.notifier.send(
                "approval_needed",
                {
                    "request": req.id,
                    "role": role.name,
                    "requester": identity.name,
                    "reason": reason,
                    "targets": list(grant.targets),
                    "duration": format_duration(extra),
                    "extension": True,
                },
            )
        return view


def apply_extension(
    ctx: WorkflowContext, conn: Connection, req: AccessRequest, *, now: datetime, actor: str
) -> None:
    """An approved extension moves its grant's end, re-checked against the role's maximum now."""
    if req.extends_grant_id is None:
        raise InvalidInput(f"request {req.id} extends no grant")
    grant = q.locked_grant(conn, req.extends_grant_id)
    role = ctx.policy.role(grant.role)
    if role is None:
        raise PolicyDenied(f"role {grant.role} is no longer in the policy")
    if (why := _no_longer_eligible(ctx, conn, grant.holder, grant.role)) is not None:
        raise PolicyDenied(f"{why}; grant {grant.id} cannot grow")
    new_expiry = check_extension(
        grant_id=grant.id,
        role=role.name,
        state=grant.state,
        starts_at=grant.starts_at,
        expires_at=grant.expires_at,
        extra=req.duration,
        max_duration=role.max_duration,
        now=now,
    )
    check_transition(f"request {req.id}", req.state, S.APPROVED)
    q.set_request_state(conn, req.id, expect=S.PENDING, state=S.APPROVED, now=now)
    q.set_grant_expiry(conn, grant.id, new_expiry)
    ctx.audit_event(
        conn,
        actor,
        "grant.extended",
        request_id=req.id,
        grant_id=grant.id,
        role=grant.role,
        details={
            "from": grant.expires_at.isoformat(),
            "to": new_expiry.isoformat(),
            "auto_rule": req.auto_approved_rule,
        },
    )


def refuse_elevation(ctx: WorkflowContext, row: Mapping[str, Any], error: ElevationRefused) -> None:
    """An elevation its target refuses for good (``row``: its queue item) ends the grant, whose
    clean-up is queued with it; a grant that ended already has its withdrawal queued."""
    now = ctx.clock.now()
    with ctx.transaction(parks_audit=True) as conn:
        issuance.release_claim(conn, row["id"], claimed_until=row["claimed_until"])
        ctx.audit_event(
            conn,
            SYSTEM.name,
            "elevation.refused",
            grant_id=row["grant_id"],
            target=row["target"],
            details={"kind": row["kind"], "handle": row["handle"], "error": error.message},
        )
        grant = q.get_grant(conn, row["grant_id"], lock=ctx.db.locks_rows)
        if grant is not None and grant.state in (S.ACTIVE, S.APPROVED):
            end(ctx, conn, grant, reason=GrantEnd.REVOKED, now=now, actor=SYSTEM.name, comment=error.message)
    ctx.wake_scheduler()
