"""Repairing a broken audit log without rewriting it: a new signed head, a record of the damage,
then the records parked meanwhile.

An operator runs ``jitgate audit repair --reason WHY`` once ``jitgate audit verify`` has said what
is wrong and they have looked into it. The repair edits and deletes no record. When the records
themselves still verify (the head was edited or deleted, the tail was cut, the log was rolled
back), it signs a new head over the chain as it stands and appends an ``audit.repaired`` record
with what ``verify`` found, the old head as it was stored, and the operator's reason, followed by
the parked records. Records that no longer verify are not papered over: the repair refuses and
they have to be restored (from a backup, or from an export kept elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jitgate.audit import backlog, checkpoint
from jitgate.audit.canonical import GENESIS_HASH
from jitgate.audit.chain import AuditLog, Event, SignedHead, read_head
from jitgate.audit.verify import verify_anchored, verify_records
from jitgate.errors import AuditIntegrityError, InvalidInput
from jitgate.store.tables import audit_events

REPAIRED = "audit.repaired"


@dataclass(frozen=True, slots=True)
class RepairResult:
    """``problem`` is what was wrong ("" if nothing); ``head`` is the head once repaired."""

    problem: str
    head: SignedHead | None
    unparked: int


def repair(
    conn: Connection,
    audit: AuditLog,
    *,
    checkpoint_path: Path | None,
    now: datetime,
    actor: str,
    reason: str,
) -> RepairResult:
    """Repair the log in the transaction open on ``conn`` (see the module docstring).

    Raises ``InvalidInput`` without a reason, ``AuditIntegrityError`` if records are damaged.
    """
    if not reason.strip():
        raise InvalidInput("say why the audit log may be repaired (--reason)")
    key = audit.public_key
    stored = read_head(conn, for_update=True)
    # The chain, its signed head and its checkpoint: the verdict `jitgate audit verify` gives.
    found = verify_anchored(conn, key, checkpoint_path=checkpoint_path)
    if found.ok:
        moved = backlog.unpark(conn, audit, now=now, actor=actor)
        return RepairResult("", read_head(conn), moved)
    records = verify_records(conn)
    if not records.ok:
        raise AuditIntegrityError(
            f"not repaired: {records.problem}; records themselves are damaged and a repair never "
            "rewrites records: restore them from a backup or an export"
        )
    problem = found.problem
    last = records.count
    digest = (
        conn.execute(sa.select(audit_events.c.hash).where(audit_events.c.seq == last)).scalar_one()
        if last
        else GENESIS_HASH
    )
    audit.reseal(conn, seq=last, digest=digest)
    details: dict[str, object] = {
        "problem": problem,
        "first_bad_record": found.first_bad_seq,
        "verdict": found.verdict,
        "resealed_at_record": last,
        "old_head": _head_json(stored),
        # What a rollback cut off stays provable: the signed head the checkpoint held.
        "checkpointed_head": _head_json(_checkpointed(checkpoint_path)),
        "reason": reason,
    }
    record = Event.checked(at=now, actor=actor, action=REPAIRED, details=details)
    audit.append_many(conn, [record])
    moved = backlog.unpark(conn, audit, now=now, actor=actor)
    return RepairResult(problem, read_head(conn), moved)


def _head_json(head: SignedHead | None) -> dict[str, object] | None:
    return None if head is None else {"seq": head.seq, "hash": head.hash, "signature": head.signature}


def _checkpointed(path: Path | None) -> SignedHead | None:
    if path is None:
        return None
    try:
        return checkpoint.read(path)
    except (AuditIntegrityError, OSError, ValueError):
        return None  # a damaged checkpoint is named by the verdict already
