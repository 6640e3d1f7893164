"""Issuing credentials: only under an active grant that covers the target, recorded and audited.

Credentials minted inside the broker (SSH certificates) are created, recorded and audited in one
transaction (``minting``). Credentials created at a target (database logins) are recorded *first*
and committed, then created, so a crash in between leaves a record that revocation will clean up,
never an unknown login.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jitgate.domain.identity import Identity
from jitgate.domain.model import Grant, RequestState
from jitgate.errors import AuditIntegrityError, Conflict, JitgateError, NotFound, ProviderError
from jitgate.policy.decision import target_named
from jitgate.policy.elevation import elevation_of
from jitgate.policy.model import Target
from jitgate.providers.base import CredentialProvider, Issued, IssueRequest
from jitgate.store import issuance
from jitgate.store import queries as q
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.minting import ACTION, MintAsk, covering_grant, mint_many, role_of


def issue(
    ctx: WorkflowContext, identity: Identity, target_name: str, *, params: Mapping[str, Any] | None = None
) -> tuple[Grant, Issued]:
    """Mint a credential for ``target_name`` under the caller's active grant that covers it."""
    params = dict(params or {})
    with ctx.refusals_audited(identity, ACTION, target=target_name):
        target = target_named(ctx.policy, target_name)
        provider = ctx.provider_for(target)
    if not provider.revocable:
        (result,) = mint_many(ctx, [MintAsk(identity, target_name, params)])
        if isinstance(result, JitgateError):
            raise result
        return result.grant, result.issued
    with ctx.refusals_audited(identity, ACTION, target=target_name):
        return _create_at_target(ctx, identity, target, provider, params)


def _create_at_target(
    ctx: WorkflowContext,
    identity: Identity,
    target: Target,
    provider: CredentialProvider,
    params: dict[str, Any],
) -> tuple[Grant, Issued]:
    """Record the credential, commit, create it at the target, then record that it exists."""
    now = ctx.clock.now()
    with ctx.transaction() as conn:
        chosen = covering_grant(q.active_grants_of(conn, identity.name, now), identity.name, target.name)
        # On SQLite this transaction already holds the database's write lock, so the row just
        # read is current; elsewhere lock it, then check it again.
        grant = q.get_grant(conn, chosen.id, lock=True) if ctx.db.locks_rows else chosen
        if grant is None or not grant.is_active_at(now):
            raise Conflict(f"grant {chosen.id} ended while the credential was being issued")
        role = role_of(ctx, grant)
        if elevation_of(role, target) is not None:
            raise Conflict(
                f"role {role.name} elevates your own account on target {target.name}: there is no credential "
                "to issue; connect as yourself (jitgate grants shows what the grant changed)"
            )
        request = IssueRequest(
            grant=grant, role=role, target=target, identity=identity, now=now, params=params
        )
        handle = provider.new_handle(request)
        credential_id = issuance.insert_credential(
            conn,
            grant_id=grant.id,
            holder=identity.name,
            target=target.name,
            kind=target.kind,
            handle=handle,
            state="issuing",
            now=now,
            record={"handle": handle},
        )
        ctx.audit_event(
            conn,
            identity.name,
            "credential.issuing",
            request_id=grant.request_id,
            grant_id=grant.id,
            role=grant.role,
            target=target.name,
            details={"kind": target.kind, "handle": handle},
        )
    try:
        issued = provider.issue(request, handle)
    except ProviderError as exc:
        _abandon(
            ctx,
            grant,
            target=target.name,
            kind=target.kind,
            handle=handle,
            credential_id=credential_id,
            actor=identity.name,
            error=str(exc),
        )
        raise
    try:
        with ctx.transaction() as conn:
            current = q.get_grant(conn, grant.id, lock=True)
            issuance.mark_credential_issued(
                conn,
                credential_id,
                record=dict(issued.record),
                valid_after=issued.valid_after,
                valid_before=issued.valid_before,
            )
            _audit_issued(
                ctx, conn, grant, target=target.name, kind=target.kind, issued=issued, actor=identity.name
            )
            if current is None or current.state is not RequestState.ACTIVE:
                # The grant ended while the login was being created: take it back at once.
                issuance.enqueue_revocation(
                    conn,
                    credential_id=credential_id,
                    grant_id=grant.id,
                    target=target.name,
                    kind=target.kind,
                    handle=handle,
                    now=ctx.clock.now(),
                )
                ended = True
            else:
                ended = False
    except AuditIntegrityError as exc:
        # The login exists, but handing it out unaudited would fail open: take it back instead.
        _abandon(
            ctx,
            grant,
            target=target.name,
            kind=target.kind,
            handle=handle,
            credential_id=credential_id,
            actor=identity.name,
            error=f"not handed out: {exc.message}"[:500],
        )
        raise
    if ended:
        ctx.wake_scheduler()
        raise Conflict(f"grant {grant.id} ended while the credential was being issued")
    return grant, issued


def _audit_issued(
    ctx: WorkflowContext, conn: Any, grant: Grant, *, target: str, kind: str, issued: Issued, actor: str
) -> None:
    """The issuance's audit record: serial or login, fingerprint, validity — never the secret."""
    ctx.audit_event(
        conn,
        actor,
        "credential.issued",
        request_id=grant.request_id,
        grant_id=grant.id,
        role=grant.role,
        target=target,
        details={"kind": kind, **dict(issued.record)},
    )


def _abandon(
    ctx: WorkflowContext,
    grant: Grant,
    *,
    target: str,
    kind: str,
    handle: str,
    credential_id: int,
    actor: str,
    error: str,
) -> None:
    """Creation failed part-way: queue a revocation so nothing half-made is left at the target."""
    with ctx.transaction(parks_audit=True) as conn:
        issuance.enqueue_revocation(
            conn,
            credential_id=credential_id,
            grant_id=grant.id,
            target=target,
            kind=kind,
            handle=handle,
            now=ctx.clock.now(),
        )
        ctx.audit_event(
            conn,
            actor,
            "credential.failed",
            request_id=grant.request_id,
            grant_id=grant.id,
            role=grant.role,
            target=target,
            details={"kind": kind, "handle": handle, "error": error},
        )
    ctx.wake_scheduler()


def grant_for(ctx: WorkflowContext, identity: Identity, grant_id: str) -> Grant:
    with ctx.db.read() as conn:
        grant = q.get_grant(conn, grant_id)
    if grant is None or (grant.holder != identity.name and not identity.admin):
        raise NotFound(f"no grant {grant_id}")
    return grant
