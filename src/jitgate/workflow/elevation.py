"""Elevating existing accounts: planned when a grant becomes active, applied and taken back through
the durable work queue, counted so that nothing is taken back early or that was there before.

A grant that elevates gets one credential row per target (state ``elevating``, then ``issued``,
then ``revoked``) and one ``elevations`` row per item (role, group), all in the transaction that
makes it active, with an ``elevate`` item queued. The queue runs work on one account at one
target one item at a time (``lock_key``), so the counting below never races another replica.

Applying: the account must exist (looked up, never created), else the grant ends at once. Before
anything is granted, each item's ``prior`` is recorded: whether the account held it before any
grant of jitgate's did (another live grant's row passes its own ``prior`` on). Recording it
first means a crash between granting and recording leaves nothing unknown.

Withdrawing, when the grant ends: an item is taken away at the target only if no other live grant
holds it for the account and the account did not hold it before; either way the row is released
and the audit log says why. Taking away also ends what still uses the item (the provider's job).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Connection

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
    """Refuse a request up front when its account is missing at a target (``PolicyDenied``).

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
            raise PolicyDenied(str(exc)) from None
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


def apply(ctx: WorkflowContext, row: Row, target: Target) -> None:
    """Apply one queued elevation; records its success itself, raises on failure."""
    provider = provider_of(ctx, target)
    with ctx.db.read() as conn:
        queued = issuance.get_revocation(conn, row["id"], lock=False)
        credential = issuance.get_credential(conn, row["credential_id"])
        items = elevations.of_credential(conn, row["credential_id"])
    if (
        queued is None
        or queued["action"] != issuance.ELEVATE
        or queued["claimed_until"] != row["claimed_until"]
    ):
        # The grant ended since this attempt was claimed: taking back runs next, nothing to give.
        with ctx.transaction(parks_audit=True) as conn:
            issuance.release_claim(conn, row["id"], claimed_until=row["claimed_until"])
        return
    if credential is None:
        raise ProviderError(f"credential {row['credential_id']} of elevation {row['handle']} is gone")
    wanted = [item for item in items if item["state"] != elevations.RELEASED]
    account = provider.find_account(target, str(credential["record"]["account"]))
    if account is None:
        raise ElevationRefused(missing(str(credential["record"]["account"]), target.name))
    names = tuple(str(item["item"]) for item in wanted)
    already = provider.held(target, account, names)
    with ctx.transaction() as conn:
        for item in wanted:
            if item["state"] == elevations.APPLYING:
                continue  # an earlier attempt recorded its prior; the target may hold it by now
            others = elevations.others_live(
                conn, target=target.name, account=account, item=item["item"], besides=row["credential_id"]
            )
            prior = bool(others[0]["prior"]) if others else item["item"] in already
            elevations.mark_applying(conn, item["id"], account=account, prior=prior)
    to_grant = tuple(name for name in names if name not in already)
    done = dict(provider.elevate(target, account, to_grant)) if to_grant else {}
    now = ctx.clock.now()
    record = {
        **credential["record"],
        "account": account,
        "granted": list(to_grant),
        "already_held": sorted(already),
    }
    with ctx.transaction() as conn:
        elevations.mark_held(conn, row["credential_id"])
        issuance.set_credential_record(conn, row["credential_id"], state="issued", record=record)
        if not issuance.finish_revocation(conn, row["id"], now, claimed_until=row["claimed_until"]):
            log.info("elevation %s was taken back meanwhile; that runs next", row["handle"])
        ctx.audit_event(
            conn,
            SYSTEM.name,
            "credential.issued",
            grant_id=row["grant_id"],
            target=target.name,
            details={"kind": target.kind, "handle": row["handle"], "elevation": {**record, **done}},
        )


def withdraw(ctx: WorkflowContext, row: Row, target: Target, *, attempts: int) -> None:
    """Take back one grant's elevation; records its success itself, raises on failure."""
    with ctx.db.read() as conn:
        items = elevations.of_credential(conn, row["credential_id"])
        decisions: dict[int, str] = {}
        for item in items:
            if item["state"] == elevations.PLANNED:
                decisions[item["id"]] = "never applied"
            elif item["state"] in elevations.LIVE:
                others = elevations.others_live(
                    conn,
                    target=target.name,
                    account=item["account"],
                    item=item["item"],
                    besides=row["credential_id"],
                )
                if others:
                    decisions[item["id"]] = f"kept: still held under grant {others[0]['grant_id']}"
                elif item["prior"]:
                    decisions[item["id"]] = "kept: held before the grant"
                else:
                    decisions[item["id"]] = "withdrawn"
    taken = [item for item in items if decisions.get(item["id"]) == "withdrawn"]
    done: dict[str, Any] = {}
    if taken:
        account = str(taken[0]["account"])
        names = tuple(str(item["item"]) for item in taken)
        done = dict(provider_of(ctx, target).withdraw(target, account, names))
    now = ctx.clock.now()
    with ctx.transaction(parks_audit=True) as conn:
        for item in items:
            if item["id"] in decisions:
                elevations.mark_released(conn, item["id"], now=now, outcome=decisions[item["id"]])
        if not issuance.finish_revocation(conn, row["id"], now, claimed_until=row["claimed_until"]):
            log.info("withdrawal %s was queued again meanwhile; it will run once more", row["handle"])
            return
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
