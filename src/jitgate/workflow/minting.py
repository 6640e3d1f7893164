"""Minting broker-made credentials (SSH certificates) for many callers in one transaction.

A certificate is signed inside the broker, so it can be recorded and audited in the same
transaction that decides to hand it out: nothing is released that is not recorded. Doing that for
every caller waiting at the same moment in *one* transaction (group commit) shares the commit,
the audit head update and its signature among them.

The work is split so the database's write lock is held as briefly as possible:

1. without the write lock: read each caller's grants in force, check each ask against grant,
   role and key, sign the certificate, and build its audit record (secret checks included);
2. under the write lock: read the grants used again (row-locked where the database has row
   locks) and release a certificate only if its grant is still in force and has not been
   shortened; then record every certificate and every refusal, and commit.

A certificate whose grant ended in between is refused and dropped unseen: it was never released
or recorded, so it was never a credential. Each ask is decided on its own: one caller's refusal
(no grant, a bad key, a login outside the role) is recorded as ``access.refused`` in the same
transaction and does not touch the others. What a caller sent can never fail the others either:
its refusal record is built in step 1 and records what was sent safely (``audit/redact.py``), and
an unexpected exception while preparing one ask fails that ask alone, as an internal error. A
storage failure fails the whole batch: nothing of it is committed and every caller gets the error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jitgate.audit.chain import Event
from jitgate.domain.identity import Identity
from jitgate.domain.model import Grant
from jitgate.errors import (
    Conflict,
    InternalError,
    InvalidInput,
    JitgateError,
    PolicyDenied,
    ProviderError,
)
from jitgate.policy.decision import target_named
from jitgate.policy.model import Role, Target
from jitgate.providers.base import Issued, IssueRequest
from jitgate.store import issuance
from jitgate.store import queries as q
from jitgate.workflow.context import INTERNAL, WorkflowContext, unexpected

ACTION = "credential.issue"
log = logging.getLogger("jitgate.workflow")


@dataclass(frozen=True, slots=True)
class MintAsk:
    """One caller asking for a credential on ``target``; ``kind`` is the kind the caller expects."""

    identity: Identity
    target: str
    params: Mapping[str, Any] = field(default_factory=dict)
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class Minted:
    grant: Grant
    target: Target
    issued: Issued
    event: Event


@dataclass(frozen=True, slots=True)
class Refused:
    """An ask refused in step 1, with its audit record ready to write."""

    error: JitgateError
    event: Event


def mint_many(ctx: WorkflowContext, asks: Sequence[MintAsk]) -> list[Minted | JitgateError]:
    """Decide and mint every ask; the result at ``i`` answers ``asks[i]``.

    Raises ``StorageUnavailable`` (nothing committed) when the database fails.
    """
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        in_force = {h: q.active_grants_of(conn, h, now) for h in {ask.identity.name for ask in asks}}
    prepared = [_prepare(ctx, in_force[ask.identity.name], ask, now) for ask in asks]
    results: list[Minted | JitgateError] = []
    with ctx.transaction() as conn:
        now = ctx.clock.now()
        used = [p.grant.id for p in prepared if isinstance(p, Minted)]
        current = q.grants_by_id(conn, used, lock=ctx.db.locks_rows)
        rows: list[issuance.IssuedCredential] = []
        events: list[Event] = []
        for ask, made in zip(asks, prepared, strict=True):
            if isinstance(made, Refused):
                events.append(made.event)
                results.append(made.error)
                continue
            outcome = _still_covered(made, current.get(made.grant.id), now)
            if isinstance(outcome, JitgateError):
                events.append(ctx.refusal_event(ask.identity, ACTION, outcome, target=ask.target))
                results.append(outcome)
                continue
            issued = outcome.issued
            rows.append(
                issuance.IssuedCredential(
                    grant_id=outcome.grant.id,
                    holder=ask.identity.name,
                    target=outcome.target.name,
                    kind=outcome.target.kind,
                    handle=issued.handle,
                    record=dict(issued.record),
                    valid_after=issued.valid_after,
                    valid_before=issued.valid_before,
                )
            )
            events.append(outcome.event)
            results.append(outcome)
        issuance.insert_issued_credentials(conn, rows, now)
        ctx.record_events(conn, events)
    return results


def _still_covered(minted: Minted, current: Grant | None, now: datetime) -> Minted | JitgateError:
    """Release ``minted`` only if its grant is in force now and ends no earlier than it did."""
    if current is None or not current.is_active_at(now) or current.expires_at < minted.grant.expires_at:
        return Conflict(f"grant {minted.grant.id} ended while the credential was being issued")
    return minted


def covering_grant(in_force: Sequence[Grant], holder: str, target: str) -> Grant:
    """Of ``holder``'s grants in force, the one covering ``target`` that runs longest."""
    candidates = [g for g in in_force if target in g.targets]
    if not candidates:
        raise PolicyDenied(f"{holder} holds no active grant for target {target}")
    return max(candidates, key=lambda g: g.expires_at)


def role_of(ctx: WorkflowContext, grant: Grant) -> Role:
    role = ctx.policy.role(grant.role)
    if role is None:
        raise PolicyDenied(f"role {grant.role} is no longer in the policy")
    return role


def _prepare(ctx: WorkflowContext, in_force: list[Grant], ask: MintAsk, now: datetime) -> Minted | Refused:
    try:
        return _mint_one(ctx, in_force, ask, now)
    except JitgateError as exc:
        error = exc
    except Exception as exc:
        # A bug met by this one ask must not fail the batch: it fails here, logged without its
        # message (which may quote what the caller sent) and recorded as a refusal.
        log.error("unexpected %s minting for %s", unexpected(exc), ask.identity.name)  # noqa: TRY400 - no message
        error = InternalError(INTERNAL)
    return Refused(error, ctx.refusal_event(ask.identity, ACTION, error, target=ask.target))


def _mint_one(ctx: WorkflowContext, in_force: list[Grant], ask: MintAsk, now: datetime) -> Minted:
    """Every check and the signing for one ask, against the caller's grants in force; writes nothing."""
    target = target_named(ctx.policy, ask.target)
    if ask.kind is not None and target.kind != ask.kind:
        use = "jitgate ssh" if target.kind == "ssh" else "jitgate db"
        raise InvalidInput(f"target {target.name} is of kind {target.kind}; use {use}")
    provider = ctx.provider_for(target)
    if provider.revocable:
        raise ProviderError(f"credentials of kind {target.kind} are created at the target, not minted here")
    grant = covering_grant(in_force, ask.identity.name, target.name)
    role = role_of(ctx, grant)
    request = IssueRequest(
        grant=grant, role=role, target=target, identity=ask.identity, now=now, params=ask.params
    )
    issued = provider.issue(request, provider.new_handle(request))
    event = ctx.checked_event(
        ask.identity.name,
        "credential.issued",
        request_id=grant.request_id,
        grant_id=grant.id,
        role=grant.role,
        target=target.name,
        details={"kind": target.kind, **dict(issued.record)},
    )
    return Minted(grant, target, issued, event)
