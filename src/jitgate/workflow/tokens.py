"""API tokens after creation: list, revoke, rotate — each user their own, admins anyone's.

Rotation issues a new token for the same user and revokes the old one in the same transaction:
no overlap, so a token that leaked stops working the moment its owner rotates it. The new token
is returned once and stored only as a hash. A user's own rotation never outlives the token it
replaces: otherwise a token issued for a day (or a stolen one) could renew itself for a year, again
and again; only an admin may give a rotated token a later end. Revoking a token also ends the web
sessions that were opened with it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from jitgate.auth.tokens import new_token, new_token_id, token_hash
from jitgate.domain.identity import Identity
from jitgate.errors import Conflict, NotFound, PolicyDenied
from jitgate.store import accounts
from jitgate.store.accounts import TokenRow
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.views import _iso


def token_json(token: TokenRow, now: datetime) -> dict[str, Any]:
    state = "revoked" if token.revoked_at is not None else "active" if token.usable_at(now) else "expired"
    return {
        "id": token.id,
        "user": token.user,
        "state": state,
        "created_at": _iso(token.created_at),
        "expires_at": _iso(token.expires_at),
        "last_used_at": _iso(token.last_used_at),
        "revoked_at": _iso(token.revoked_at),
    }


def list_tokens(ctx: WorkflowContext, identity: Identity, *, user: str | None = None) -> list[TokenRow]:
    """The caller's own tokens; an admin may name another user, or pass ``*`` for everyone's."""
    wanted = identity.name if user is None else user
    if wanted != identity.name and not identity.admin:
        raise PolicyDenied("only admins may list other users' tokens")
    with ctx.db.read() as conn:
        return accounts.list_tokens(conn, user=None if wanted == "*" else wanted)


def _locked_own(conn: Connection, identity: Identity, token_id: str) -> TokenRow:
    token = accounts.get_token(conn, token_id, lock=True)
    # Someone else's token is "not found" to a non-admin: its id tells them nothing.
    if token is None or (token.user != identity.name and not identity.admin):
        raise NotFound(f"no token {token_id}")
    return token


def revoke(ctx: WorkflowContext, identity: Identity, token_id: str) -> TokenRow:
    with ctx.refusals_audited(identity, "token.revoked", details={"token_id": token_id}):
        now = ctx.clock.now()
        with ctx.transaction() as conn:
            token = _locked_own(conn, identity, token_id)
            if not accounts.revoke_token(conn, token_id, now):
                raise Conflict(f"token {token_id} is already revoked")
            sessions = accounts.delete_sessions_of_token(conn, token_id)
            ctx.audit_event(
                conn,
                identity.name,
                "token.revoked",
                details={"token_id": token_id, "user": token.user, "sessions_ended": sessions},
            )
            found = accounts.get_token(conn, token_id)
        if found is None:
            raise NotFound(f"no token {token_id}")
        return found


def rotate(
    ctx: WorkflowContext, identity: Identity, token_id: str, *, lifetime: timedelta
) -> tuple[TokenRow, str]:
    """A new token for the owner of ``token_id``, which is revoked in the same transaction."""
    with ctx.refusals_audited(identity, "token.rotated", details={"token_id": token_id}):
        now = ctx.clock.now()
        secret = new_token()
        new_id = new_token_id()
        with ctx.transaction() as conn:
            token = _locked_own(conn, identity, token_id)
            if not token.usable_at(now):
                raise Conflict(f"token {token_id} is revoked or expired; an admin can issue a new one")
            owner = accounts.locked_user(conn, token.user)
            if owner.disabled:
                raise Conflict(f"user {owner.name} is disabled")
            ends = now + lifetime if identity.admin else min(now + lifetime, token.expires_at)
            accounts.revoke_token(conn, token_id, now)
            sessions = accounts.delete_sessions_of_token(conn, token_id)
            accounts.insert_token(
                conn,
                token_id=new_id,
                token_hash=token_hash(secret),
                user=token.user,
                now=now,
                expires_at=ends,
            )
            ctx.audit_event(
                conn,
                identity.name,
                "token.rotated",
                details={
                    "token_id": token_id,
                    "new_token_id": new_id,
                    "user": token.user,
                    "expires_at": _iso(ends),
                    "sessions_ended": sessions,
                },
            )
            created = accounts.get_token(conn, new_id)
        if created is None:
            raise NotFound(f"no token {new_id}")
        return created, secret
