"""Elevating existing accounts: planned when a grant becomes active, applied and taken back through
the durable work queue, counted so that nothing is taken back early or that was there before.

A grant that elevates gets one credential row per target (state ``elevating``, then ``issued``,
then ``revoked``) and one ``elevations`` row per item (role, group), all in the transaction that
makes it active, with an ``elevate`` item queued. The queue runs work on one account at one
target one item at a time (``lock_key``). That is not relied on alone: a claim can lapse while a
slow target still works, and two spellings of one account are two keys. So every transaction that
counts takes its turn per account as the target names it (``elevations.lock_account``), checks
that its attempt still holds its claim, and counts again what it decided before the target call.

Applying: the account must exist (looked up, never created), else the grant ends at once. Before
anything is granted, each item's ``prior`` is recorded: whether the account held it before any
grant of jitgate's did (another grant's row that is live, or let go of the item since the target
was asked, passes its own ``prior`` on). Recording it first means a crash between granting and
recording leaves nothing unknown. An attempt whose claim lapsed, and whose grant was taken back
meanwhile, makes the withdrawal run again after its own call landed.

Withdrawing, when the grant ends: an item is taken away at the target only if no other live grant
holds it for the account and the account did not hold it before; either way the row is released
and the audit log says why. Taking away also ends what still uses the item (the provider's job).
Kept for a grant that let go of it meanwhile, it is taken away after all; taken away from a grant
that came to hold it meanwhile, it is applied for that grant again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, RowMapping

from jitgate.domain.identity import SYSTEM
from jitgate.domain.model import Grant
from jitgate.errors import ElevationRefused, PolicyDenied, ProviderError
from jitgate.policy.elevation import Elevation, elevation_of
from jitgate.policy.model import Role, Target
from jitgate.providers.base import ElevationProvider
from jitgate.store import elevations, issuance
from jitgate.workflow.context import WorkflowContext

log = logging.getLogger(__name__)
Row = Mapping[str, Any]
ELEVATING = "elevating"


def lock_key(target: str, account: str) -> str:
    return f"{target}\x1f{account}"[:400]


def provider_of(ctx: WorkflowContext, target: Target) -> ElevationProvider:
    provider = ctx.provider_for(target)
    if not isinstance(provider, ElevationProvider):
        raise ProviderError(
            f"the {target.kind} provider cannot elevate existing accounts (target {target.name})"
        )
    return provider


def accounts_of(
    ctx: WorkflowContext, role: Role, holder: str, target_names: tuple[str, ...]
) -> list[tuple[Elevation, str]]:
    """Each elevation of ``role`` on ``target_names``, with the account ``holder`` maps to there.
    ``PolicyDenied`` if the policy maps the holder to none on one of them."""
    found: list[tuple[Elevation, str]] = []
    for name in target_names:
        target = ctx.policy.target(name)
        elevation = None if target is None else elevation_of(role, target)
        if elevation is None:
            continue
        account = elevation.account_of(holder)
        if account is None:
            raise PolicyDenied(f"role {role.name} maps {holder} to no existing account on target {name}")
        found.append((elevation, account))
    return found


def check_accounts_exist(
    ctx: WorkflowContext, role: Role, holder: str, target_names: tuple[str, ...]
) -> None:
    """Refuse a request up front when its account is missing at a target, or is one the target
    refuses to elevate (``PolicyDenied``).

    An account the target will never elevate (``ElevationRefused``: a superuser, say) is refused
    the same way. A target that cannot be asked right now does not refuse: the account is looked
    up again when the elevation is applied, and the grant ends then if it is missing.
    """
    for elevation, account in accounts_of(ctx, role, holder, target_names):
        target = elevation.target
        name = target.name
        try:
            exists = provider_of(ctx, target).find_account(target, account) is not None
        except ElevationRefused as exc:
            raise PolicyDenied(exc.message) from None
        except ProviderError as exc:
            log.info("could not check account %s on target %s before the request: %s", account, name, exc)
            continue
        if not exists:
            raise PolicyDenied(missing(account, name))


def missing(account: str, target: str) -> str:
    return (
        f"account {account} does not exist on target {target}"
        " (jitgate elevates existing accounts, never creates them)"
    )


def plan(ctx: WorkflowContext, conn: Connection, grant: Grant) -> int:
    """Queue the grant's elevations (in the transaction that makes it active); returns how many."""
    role = ctx.policy.role(grant.role)
    if role is None:
        return 0
    now = ctx.clock.now()
    planned = 0
    for elevation, account in accounts_of(ctx, role, grant.holder, grant.targets):
        target = elevation.target
        name = target.name
        handle = f"elevation:{grant.id}:{name}"
        credential_id = issuance.insert_credential(
            conn,
            grant_id=grant.id,
            holder=grant.holder,
            target=name,
            kind=target.kind,
            handle=handle,
            state=ELEVATING,
            now=now,
            record={"elevation": True, "account": account, "items": list(elevation.items)},
            valid_after=grant.starts_at,
            valid_before=grant.expires_at,
        )
        elevations.plan(
            conn,
            credential_id=credential_id,
            grant_id=grant.id,
            target=name,
            account=account,
            items=elevation.items,
            now=now,
        )
        issuance.enqueue_revocation(
            conn,
            credential_id=credential_id,
            grant_id=grant.id,
            target=name,
            kind=target.kind,
            handle=handle,
            now=now,
            action=issuance.ELEVATE,
            lock_key=lock_key(name, account),
        )
        planned += 1
    return planned


def unmapped(ctx: WorkflowContext, grant: Grant) -> str | None:
    """Why ``grant`` cannot be elevated as planned (the policy maps its holder to no account
    on one of its targets now), or None."""
    role = ctx.policy.role(grant.role)
    if role is None:
        return None
    try:
        accounts_of(ctx, role, grant.holder, grant.targets)
    except PolicyDenied as exc:
        return exc.message
    return None


def apply(ctx: WorkflowContext, row: Row, target: Target) -> None:
    """Apply one queued elevation; records its success itself, raises on failure."""
    provider = provider_of(ctx, target)
    with ctx.db.read() as conn:
        queued = issuance.get_revocation(conn, row["id"], lock=False)
        credential = issuance.get_credential(conn, row["credential_id"])
        names = tuple(
            str(item["item"])
            for item in elevations.of_credential(conn, row["credential_id"])
            if item["state"] != elevations.RELEASED
        )
    if not _ours_to_apply(queued, row):
        # The grant ended since this attempt was claimed: taking back runs next, nothing to give.
        with ctx.transaction(parks_audit=True) as conn:
            issuance.release_claim(conn, row["id"], claimed_until=row["claimed_until"])
        return
    if credential is None:
        raise ProviderError(f"credential {row['credential_id']} of elevation {row['handle']} is gone")
    # The account as the policy maps it; once applied, the record names it as the target does.
    mapped = str(credential["record"].get("mapped", credential["record"]["account"]))
    account = provider.find_account(target, mapped)
    if account is None:
        raise ElevationRefused(missing(mapped, target.name))
    seen_at = ctx.clock.now()
    already = provider.held(target, account, names)
    with ctx.transaction() as conn:
        ctx.audit.check_head(conn)  # granting waits for a broken audit log, as activating does
        elevations.lock_account(conn, target=target.name, account=account)
        if not _ours_to_apply(issuance.get_revocation(conn, row["id"], lock=ctx.db.locks_rows), row):
            issuance.release_claim(conn, row["id"], claimed_until=row["claimed_until"])
            return
        wanted = elevations.record_prior(
            conn, row["credential_id"], target=target.name, account=account, already=already, seen_at=seen_at
        )
    # Everything not held before is granted, also what the target shows held under another grant
    # (idempotent): that grant's withdrawal may be landing right now.
    to_grant = tuple(str(item["item"]) for item in wanted if not item["prior"])
    ids = [int(item["id"]) for item in wanted]
    try:
        done = dict(provider.elevate(target, account, to_grant)) if to_grant else {}
    except Exception:
        with ctx.transaction(parks_audit=True) as conn:
            elevations.lock_account(conn, target=target.name, account=account)
            _taken_over(ctx, conn, row, account=account, row_ids=ids, granted=to_grant)
        raise
    record = {
        **credential["record"],
        "account": account,
        "mapped": mapped,
        "granted": list(to_grant),
        "already_held": sorted(already),
    }
    now = ctx.clock.now()
    # Parked if the audit log broke since: the target holds the elevation, so it must be on record.
    with ctx.transaction(parks_audit=True) as conn:
        elevations.lock_account(conn, target=target.name, account=account)
        taken_over = _taken_over(ctx, conn, row, account=account, row_ids=ids, granted=to_grant)
        elevations.mark_held(conn, row["credential_id"])
        issuance.set_credential_record(conn, row["credential_id"], state="issued", record=record)
        if not taken_over and not issuance.finish_revocation(
            conn, row["id"], now, claimed_until=row["claimed_until"]
        ):
            log.info("elevation %s was taken back meanwhile; that runs next", row["handle"])
        ctx.audit_event(
            conn,
            SYSTEM.name,
            "credential.issued",
            grant_id=row["grant_id"],
            target=target.name,
            details={"kind": target.kind, "handle": row["handle"], "elevation": {**record, **done}},
        )


def _ours_to_apply(queued: RowMapping | None, row: Row) -> bool:
    """Whether the queue still asks this attempt to apply: an elevation, claimed by it."""
    return (
        queued is not None
        and queued["action"] == issuance.ELEVATE
        and queued["claimed_until"] == row["claimed_until"]
    )


def _taken_over(
    ctx: WorkflowContext,
    conn: Connection,
    row: Row,
    *,
    account: str,
    row_ids: list[int],
    granted: tuple[str, ...],
) -> bool:
    """After the target was asked to elevate: whether another attempt took this work meanwhile
    (the claim lapsed while the target worked). If it withdrew the elevation, it may have done so
    before this call landed: the rows are live again, nothing seen meanwhile counts as held before,
    and the withdrawal is queued to run once more."""
    queued = issuance.get_revocation(conn, row["id"], lock=ctx.db.locks_rows)
    if queued is None or queued["claimed_until"] == row["claimed_until"]:
        return False
    if queued["action"] == issuance.WITHDRAW and granted:
        log.warning("elevation %s landed after its claim lapsed; its withdrawal runs again", row["handle"])
        elevations.live_again(conn, row_ids)
        elevations.forget_prior(
            conn, target=row["target"], account=account, items=granted, besides=row["credential_id"]
        )
        issuance.enqueue_revocation(
            conn,
            credential_id=row["credential_id"],
            grant_id=row["grant_id"],
            target=row["target"],
            kind=row["kind"],
            handle=row["handle"],
            now=ctx.clock.now(),
            action=issuance.WITHDRAW,
        )
    return True


def withdraw(ctx: WorkflowContext, row: Row, target: Target, *, attempts: int) -> None:
    """Take back one grant's elevation; records its success itself, raises on failure."""
    with ctx.db.read() as conn:
        items = elevations.of_credential(conn, row["credential_id"])
        decisions = elevations.decide(conn, items, target.name, row["credential_id"])
    taken = [item for item in items if decisions.get(item["id"]) == elevations.WITHDRAWN]
    done: dict[str, Any] = {}
    if taken:
        account = str(taken[0]["account"])
        names = tuple(str(item["item"]) for item in taken)
        done = dict(provider_of(ctx, target).withdraw(target, account, names))
    now = ctx.clock.now()
    with ctx.transaction(parks_audit=True) as conn:
        for counted in sorted({str(item["account"]) for item in items if item["state"] in elevations.LIVE}):
            elevations.lock_account(conn, target=target.name, account=counted)
        if not issuance.finish_revocation(conn, row["id"], now, claimed_until=row["claimed_until"]):
            log.info("withdrawal %s was queued again meanwhile; it will run once more", row["handle"])
            return
        if not _still_right(conn, row, items, decisions, now=now):
            return
        for item in items:
            if item["id"] in decisions:
                elevations.mark_released(conn, item["id"], now=now, outcome=decisions[item["id"]])
        issuance.mark_credential_revoked(conn, row["credential_id"], now)
        outcome = {
            "account": items[0]["account"] if items else None,
            "items": {str(item["item"]): decisions.get(item["id"], "released earlier") for item in items},
            **done,
        }
        ctx.audit_event(
            conn,
            SYSTEM.name,
            "credential.revoked",
            grant_id=row["grant_id"],
            target=target.name,
            details={"kind": row["kind"], "handle": row["handle"], "attempts": attempts, "outcome": outcome},
        )


def _still_right(
    conn: Connection, row: Row, items: Sequence[RowMapping], decisions: dict[int, str], *, now: datetime
) -> bool:
    """Count again, in turn with everyone else counting for the account (two spellings of it, or a
    claim that lapsed, let work on it overlap), before the decisions are recorded.

    An item taken away that another grant has come to hold meanwhile is applied again for that
    grant. An item kept for another grant that has let go of it since must go after all: then the
    withdrawal is queued to run again, and False returned.
    """
    again = elevations.decide(conn, items, row["target"], row["credential_id"])
    for item in items:
        if decisions.get(item["id"]) == elevations.WITHDRAWN and again[item["id"]].startswith(
            elevations.KEPT_FOR
        ):
            for other in elevations.others_live(
                conn,
                target=row["target"],
                account=item["account"],
                item=item["item"],
                besides=row["credential_id"],
            ):
                issuance.elevate_again(conn, other["credential_id"], now)
    if not any(
        decisions.get(item["id"], "").startswith(elevations.KEPT_FOR)
        and again[item["id"]] == elevations.WITHDRAWN
        for item in items
    ):
        return True
    log.info("withdrawal %s kept an item for a grant that let go of it since; it runs again", row["handle"])
    issuance.enqueue_revocation(
        conn,
        credential_id=row["credential_id"],
        grant_id=row["grant_id"],
        target=row["target"],
        kind=row["kind"],
        handle=row["handle"],
        now=now,
        action=issuance.WITHDRAW,
    )
    return False
