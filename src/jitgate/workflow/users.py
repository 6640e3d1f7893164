"""Local users and service accounts: created with one API token, disabled, enabled, regrouped.

Every change is one transaction with its audit record. Disabling a user ends everything they
hold at once: their web sessions are deleted, their active and scheduled grants are revoked
(the credentials' revocation queued as for any revocation) and their open requests cancelled.
Their API tokens are refused while they are disabled and work again when they are enabled
(unless expired or revoked meanwhile).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from jitgate.audit.chain import AuditLog
from jitgate.auth.tokens import new_token, new_token_id, token_hash
from jitgate.clock import Clock
from jitgate.domain.identity import LOCAL_NAME, Identity, IdentityKind, local_name_problem
from jitgate.domain.model import GrantEnd, RequestState
from jitgate.errors import Conflict, InvalidInput, NotFound, PolicyDenied
from jitgate.store import accounts
from jitgate.store import queries as q
from jitgate.store.accounts import UserRow
from jitgate.store.db import Database
from jitgate.workflow import grants
from jitgate.workflow.context import WorkflowContext

DEFAULT_TOKEN_LIFETIME = timedelta(days=30)
MAX_TOKEN_LIFETIME = timedelta(days=365)


def checked_lifetime(
    wanted: timedelta | None, *, default: timedelta, maximum: timedelta = MAX_TOKEN_LIFETIME
) -> timedelta:
    """The lifetime of a new token: ``wanted`` or the default, never zero and never past the maximum."""
    lifetime = default if wanted is None else wanted
    if lifetime <= timedelta(0):
        raise InvalidInput("a token's lifetime must be positive")
    if lifetime > maximum:
        raise InvalidInput(f"a token may live at most {maximum.days} days")
    return lifetime


def _checked_groups(groups: Sequence[str]) -> list[str]:
    for group in groups:
        if not LOCAL_NAME.fullmatch(group):
            raise InvalidInput(f"{group!r} is not a valid group name")
    return sorted(set(groups))


def add_user(
    db: Database,
    audit: AuditLog,
    clock: Clock,
    *,
    actor: str,
    name: str,
    groups: Sequence[str],
    admin: bool = False,
    kind: IdentityKind = IdentityKind.USER,
    expires_in: timedelta = DEFAULT_TOKEN_LIFETIME,
) -> tuple[Identity, str]:
    """Create a user with one API token; returns the token, which is never stored or shown again."""
    problem = local_name_problem(name)
    if problem is not None:
        raise InvalidInput(problem)
    wanted = _checked_groups(groups)
    lifetime = checked_lifetime(expires_in, default=DEFAULT_TOKEN_LIFETIME)
    token = new_token()
    token_id = new_token_id()
    now = clock.now()
    with db.write() as conn:
        if accounts.get_user(conn, name) is not None:
            raise Conflict(f"user {name} already exists")
        q.insert_user(conn, name=name, groups=wanted, admin=admin, kind=kind, now=now)
        accounts.insert_token(
            conn,
            token_id=token_id,
            token_hash=token_hash(token),
            user=name,
            now=now,
            expires_at=now + lifetime,
        )
        audit.append(
            conn,
            at=now,
            actor=actor,
            action="user.added",
            details={
                "name": name,
                "groups": wanted,
                "admin": admin,
                "kind": kind.value,
                "token_id": token_id,
                "expires_at": (now + lifetime).isoformat(),
            },
        )
    return Identity(name=name, groups=frozenset(wanted), admin=admin, kind=kind, source="token"), token


def _require_admin(identity: Identity, what: str) -> None:
    if not identity.admin:
        raise PolicyDenied(f"only admins may {what}")


def list_users(ctx: WorkflowContext, identity: Identity) -> list[UserRow]:
    _require_admin(identity, "list users")
    with ctx.db.read() as conn:
        return accounts.all_users(conn)


def set_disabled(ctx: WorkflowContext, identity: Identity, name: str, *, disabled: bool) -> UserRow:
    """Disable a user (ending their sessions, grants and open requests) or enable them again."""
    action = "user.disabled" if disabled else "user.enabled"
    with ctx.refusals_audited(identity, action, details={"name": name}):
        _require_admin(identity, "disable or enable users")
        if disabled and name == identity.name:
            raise Conflict("you cannot disable yourself")
        now = ctx.clock.now()
        with ctx.transaction() as conn:
            user = accounts.locked_user(conn, name)
            if user.disabled == disabled:
                raise Conflict(f"user {name} is already {'disabled' if disabled else 'enabled'}")
            accounts.set_user_disabled(conn, name, disabled)
            details: dict[str, object] = {"name": name}
            revoked: list[str] = []
            if disabled:
                sessions, revoked, cancelled = _end_everything_of(ctx, conn, name, identity.name, now)
                details.update(sessions_ended=sessions, grants_revoked=revoked, requests_cancelled=cancelled)
            ctx.audit_event(conn, identity.name, action, details=details)
            changed = accounts.locked_user(conn, name)
        ctx.wake_scheduler()  # revocations queued for the grants that ended
        for grant_id in revoked:
            ctx.notifier.send("revoked", {"grant": grant_id, "holder": name, "by": identity.name})
        return changed


def end_console_sessions(ctx: WorkflowContext, identity: Identity, name: str) -> int:
    """End every console session of ``name`` now, whoever they are: a local user, or an identity
    from the provider, which has no user row to disable (their sessions otherwise last until the
    next check at the provider). Grants and tokens stay; returns how many sessions ended."""
    with ctx.refusals_audited(identity, "user.sessions_ended", details={"name": name}):
        _require_admin(identity, "end other people's console sessions")
        with ctx.transaction() as conn:
            ended = accounts.delete_sessions_of(conn, name)
            if ended == 0:
                raise NotFound(f"{name} has no console session")
            details = {"name": name, "sessions": ended}
            ctx.audit_event(conn, identity.name, "user.sessions_ended", details=details)
        return ended


def _end_everything_of(
    ctx: WorkflowContext, conn: Connection, name: str, actor: str, now: datetime
) -> tuple[int, list[str], list[str]]:
    """Delete the user's web sessions, revoke their grants in force or scheduled, cancel their
    open requests — in the transaction that disables them."""
    sessions = accounts.delete_sessions_of(conn, name)
    revoked = []
    for held in q.list_grants(
        conn, holder=name, states=(RequestState.ACTIVE, RequestState.APPROVED), limit=None
    ):
        grant = q.locked_grant(conn, held.id)
        if grants.end(
            ctx, conn, grant, reason=GrantEnd.REVOKED, now=now, actor=actor, comment=f"user {name} disabled"
        ):
            revoked.append(grant.id)
    cancelled = []
    for req in q.pending_requests_of(conn, name):
        if q.set_request_state(
            conn, req.id, expect=RequestState.PENDING, state=RequestState.CANCELLED, now=now
        ):
            ctx.audit_event(
                conn,
                actor,
                "request.cancelled",
                request_id=req.id,
                role=req.role,
                details={"why": f"user {name} disabled"},
            )
            cancelled.append(req.id)
    return sessions, revoked, cancelled


def change_groups(
    ctx: WorkflowContext, identity: Identity, name: str, *, add: Sequence[str], remove: Sequence[str]
) -> UserRow:
    with ctx.refusals_audited(identity, "user.groups_changed", details={"name": name}):
        _require_admin(identity, "change users' groups")
        added, removed = _checked_groups(add), _checked_groups(remove)
        if set(added) & set(removed):
            raise InvalidInput("a group cannot be added and removed at once")
        if not added and not removed:
            raise InvalidInput("name at least one group to add or remove")
        with ctx.transaction() as conn:
            user = accounts.locked_user(conn, name)
            groups = (set(user.groups) | set(added)) - set(removed)
            accounts.set_user_groups(conn, name, sorted(groups))
            ctx.audit_event(
                conn,
                identity.name,
                "user.groups_changed",
                details={
                    "name": name,
                    "added": added,
                    "removed": removed,
                    "before": list(user.groups),
                    "after": sorted(groups),
                },
            )
            return accounts.locked_user(conn, name)
