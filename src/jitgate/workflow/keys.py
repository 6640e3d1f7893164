"""SSH public keys users register to sign in at the SSH gateway, and who a key says is connecting.

A registered key authenticates its holder to the gateway only; no target trusts it (the gateway
mints an onward certificate per connection). So the checks here are about the key naming exactly
one person: a fingerprint is registered once, by anyone (the refusal does not say by whom), and
the broker's own CA keys are never accepted, whatever their state. Only users the broker keeps
(local users and service accounts, rows in ``users``) may register keys: the gateway builds the
connecting identity from that row, and an OIDC identity's groups exist only in its token.

``register_ephemeral`` is the key ``jitgate ssh --via-gateway`` makes in memory for one
connection; it ends within minutes and the holder's ended ones are swept when the next is made.

``identity_for_key`` runs for every public-key attempt at the gateway, on a worker thread: one
indexed read, and a write of the coarse last use at most once a ``TOUCH_EVERY`` per key.
"""

from __future__ import annotations

import base64
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from jitgate.domain.durations import format_duration
from jitgate.domain.identity import Identity
from jitgate.domain.text import checked_text
from jitgate.errors import Conflict, InvalidInput, NotFound, PolicyDenied, StorageUnavailable
from jitgate.providers.ssh.provider import SshCertificateProvider
from jitgate.providers.ssh.wire import ParsedPublicKey, fingerprint, parse_public_key
from jitgate.store import accounts
from jitgate.store import keys as store
from jitgate.store.keys import KeyRow
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.views import _iso

ADDED = "key.added"
REMOVED = "key.removed"
MAX_COMMENT = 200
TOUCH_EVERY = timedelta(minutes=1)
EPHEMERAL_COMMENT = "jitgate ssh --via-gateway"
SOURCE = "ssh-key"
"""``Identity.source`` of someone proven by a registered key."""
log = logging.getLogger("jitgate.workflow")


def new_key_id() -> str:
    return "k-" + secrets.token_hex(8)


def key_json(row: KeyRow, now: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "user": row.holder,
        "fingerprint": row.fingerprint,
        "key_type": row.key_type,
        "comment": row.comment,
        "ephemeral": row.ephemeral,
        "created_at": _iso(row.created_at),
        "expires_at": _iso(row.expires_at),
        "last_used_at": _iso(row.last_used_at),
        "state": "active" if row.usable_at(now) else "expired",
    }


def _parsed(ctx: WorkflowContext, public_line: str) -> ParsedPublicKey:
    parsed = parse_public_key(public_line)
    provider = ctx.providers.get("ssh")
    if isinstance(provider, SshCertificateProvider) and provider.ca_store.key_by_fingerprint(
        parsed.fingerprint
    ):
        raise InvalidInput("this is one of the broker's own CA keys; register your own public key")
    return parsed


def _insert(
    ctx: WorkflowContext,
    conn: Connection,
    identity: Identity,
    parsed: ParsedPublicKey,
    *,
    comment: str,
    ephemeral: bool,
    now: datetime,
    expires_at: datetime,
    extra: dict[str, Any],
) -> KeyRow:
    """Insert and audit a key for ``identity``, refusing it if the holder or the key does not qualify."""
    holder = accounts.get_user(conn, identity.name)
    if holder is None:
        raise PolicyDenied(
            "only local users and service accounts can register SSH keys; "
            "identities signed in through OIDC are not kept by the broker"
        )
    if holder.disabled:
        raise PolicyDenied(f"user {holder.name} is disabled")
    if store.fingerprint_taken(conn, parsed.fingerprint):
        raise Conflict("this key is already registered")
    key_id = new_key_id()
    try:
        store.insert_key(
            conn,
            key_id=key_id,
            holder=identity.name,
            fingerprint=parsed.fingerprint,
            key_type=parsed.key_type,
            public_key=f"{parsed.key_type} {base64.b64encode(parsed.blob).decode()}",
            comment=comment,
            ephemeral=ephemeral,
            now=now,
            expires_at=expires_at,
        )
    except IntegrityError:
        # The same key registered by someone else a moment ago, between the check and the insert.
        raise Conflict("this key is already registered") from None
    ctx.audit_event(
        conn,
        identity.name,
        ADDED,
        details={
            "key_id": key_id,
            "fingerprint": parsed.fingerprint,
            "key_type": parsed.key_type,
            "comment": comment,
            "expires_at": _iso(expires_at),
            "ephemeral": ephemeral,
            **extra,
        },
    )
    found = store.get_key(conn, key_id)
    if found is None:
        raise NotFound(f"no key {key_id}")
    return found


def add_key(
    ctx: WorkflowContext,
    identity: Identity,
    public_line: str,
    *,
    comment: str | None = None,
    lifetime: timedelta,
    max_lifetime: timedelta,
) -> KeyRow:
    """Register ``public_line`` (an OpenSSH public key line) for ``identity`` until now + ``lifetime``.

    ``comment`` defaults to the line's own comment. Refused: key types the broker does not accept
    (``providers.ssh.wire``), the broker's CA keys, a key registered already, a lifetime that is
    not positive or longer than ``max_lifetime``.
    """
    with ctx.refusals_audited(identity, ADDED):
        if lifetime <= timedelta(0):
            raise InvalidInput("a key's lifetime must be positive")
        if lifetime > max_lifetime:
            longest = f"{max_lifetime.days} days" if max_lifetime.days else format_duration(max_lifetime)
            raise InvalidInput(f"a key may be registered for at most {longest}")
        parsed = _parsed(ctx, public_line)
        text = checked_text("comment", parsed.comment if comment is None else comment, max_length=MAX_COMMENT)
        now = ctx.clock.now()
        with ctx.transaction() as conn:
            return _insert(
                ctx,
                conn,
                identity,
                parsed,
                comment=text,
                ephemeral=False,
                now=now,
                expires_at=now + lifetime,
                extra={},
            )


def register_ephemeral(
    ctx: WorkflowContext, identity: Identity, public_line: str, *, ttl: timedelta
) -> KeyRow:
    """Register a key for one connection through the gateway, ending after ``ttl``.

    The holder's ephemeral keys that have ended are removed in the same transaction.
    """
    with ctx.refusals_audited(identity, ADDED, details={"ephemeral": True}):
        if ttl <= timedelta(0):
            raise InvalidInput("an ephemeral key's lifetime must be positive")
        parsed = _parsed(ctx, public_line)
        now = ctx.clock.now()
        with ctx.transaction() as conn:
            swept = store.delete_expired_ephemeral(conn, identity.name, now)
            return _insert(
                ctx,
                conn,
                identity,
                parsed,
                comment=EPHEMERAL_COMMENT,
                ephemeral=True,
                now=now,
                expires_at=now + ttl,
                extra={"removed_ended_key_ids": swept} if swept else {},
            )


def list_keys(ctx: WorkflowContext, identity: Identity, *, user: str | None = None) -> list[KeyRow]:
    """The caller's own keys (ephemeral ones too); an admin may name another user, or ``*``."""
    wanted = identity.name if user is None else user
    if wanted != identity.name and not identity.admin:
        raise PolicyDenied("only admins may list other users' keys")
    with ctx.db.read() as conn:
        return store.list_keys(conn, holder=None if wanted == "*" else wanted)


def remove_key(ctx: WorkflowContext, identity: Identity, key_id: str) -> KeyRow:
    """Delete a key: the caller's own, or anyone's for an admin. Returns the row as it was."""
    # Taking access away: the removal must not wait for an audit repair.
    with (
        ctx.refusals_audited(identity, REMOVED, details={"key_id": key_id}),
        ctx.transaction(parks_audit=True) as conn,
    ):
        key = store.get_key(conn, key_id, lock=True)
        # Someone else's key is "not found" to a non-admin: its id tells them nothing.
        if key is None or (key.holder != identity.name and not identity.admin):
            raise NotFound(f"no key {key_id}")
        store.delete_key(conn, key_id)
        ctx.audit_event(
            conn,
            identity.name,
            REMOVED,
            details={
                "key_id": key.id,
                "user": key.holder,
                "fingerprint": key.fingerprint,
                "ephemeral": key.ephemeral,
            },
        )
        return key


def identity_for_key(ctx: WorkflowContext, blob: bytes, now: datetime) -> tuple[Identity, KeyRow] | None:
    """Who the public key ``blob`` (SSH wire form) stands for at ``now``, with its key; else None.

    None for a key nobody registered, one that has ended, or one whose holder is disabled or has
    no row in ``users``. The identity is built from the holder's row as it is now (groups, admin,
    kind); its ``expires_at`` is the key's end. Safe to call from any thread.
    """
    with ctx.db.read() as conn:
        found = store.key_with_holder(conn, fingerprint(blob))
    if found is None:
        return None
    key, holder = found
    if not key.usable_at(now) or holder.disabled:
        return None
    if key.last_used_at is None or now - key.last_used_at >= TOUCH_EVERY:
        try:
            with ctx.db.write() as conn:
                store.touch_key(conn, key.id, now, now - TOUCH_EVERY)
        except StorageUnavailable:
            # Only the coarse last-use time is lost; the key proved who is connecting all the same.
            log.warning("could not record the last use of SSH key %s", key.id)
    return holder.identity(SOURCE, expires_at=key.expires_at), key
