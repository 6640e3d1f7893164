"""The durable scheduler: starts scheduled grants, ends expired ones, times out unreviewed requests,
warns before expiry, and retries revocations — all driven by rows in the database.

Nothing lives only in memory: after a restart (or on another replica) the same rows are found
again, so a grant that expired while the broker was down is ended on start. Each step is a
compare-and-set under a row lock (``SKIP LOCKED`` on PostgreSQL), so it runs exactly once across
replicas. The loop sleeps until the earliest deadline in the database or until woken by a change.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from jitgate.audit import checkpoint
from jitgate.domain.identity import SYSTEM
from jitgate.domain.model import GrantEnd, RequestState
from jitgate.errors import (
    AuditIntegrityError,
    ElevationRefused,
    JitgateError,
    ProviderError,
    TargetUnreachable,
)
from jitgate.store import issuance
from jitgate.store import queries as q
from jitgate.workflow import audit_state, elevation, grants, sessions
from jitgate.workflow.context import WorkflowContext

log = logging.getLogger("jitgate.scheduler")
Row = dict[str, Any]
S = RequestState
BATCH = 200
EXPIRY_WARNING = timedelta(minutes=10)
REVOCATION_LEASE = timedelta(seconds=30)
# Revocations of one claimed batch in flight at once; the database providers keep as many admin
# connections per target by default (``admin_connections``).
REVOCATION_WORKERS = 4
SESSION_STALE = timedelta(seconds=30)
"""A live gateway session whose gateway has not beaten for this long is ended as lost."""
REAP_EVERY = timedelta(seconds=5)


def expire_due(ctx: WorkflowContext, *, limit: int = BATCH) -> int:
    """End every active grant whose ``expires_at`` has come; returns how many this call ended."""
    now = ctx.clock.now()
    with ctx.transaction(parks_audit=True) as conn:
        due = q.due_grants(
            conn, state=S.ACTIVE, column="expires_at", now=now, limit=limit, skip_locked=ctx.db.locks_rows
        )
        ended = [
            g for g in due if grants.end(ctx, conn, g, reason=GrantEnd.EXPIRED, now=now, actor=SYSTEM.name)
        ]
    if ended:
        ctx.wake_scheduler()  # after the commit: the revocation loop must see the queued work
    for grant in ended:
        ctx.notifier.send("expired", {"grant": grant.id, "holder": grant.holder, "role": grant.role})
    return len(ended)


def start_due(ctx: WorkflowContext, *, limit: int = BATCH) -> int:
    now = ctx.clock.now()
    with ctx.transaction() as conn:
        due = q.due_grants(
            conn, state=S.APPROVED, column="starts_at", now=now, limit=limit, skip_locked=ctx.db.locks_rows
        )
        started = [g for g in due if grants.start_scheduled(ctx, conn, g, now=now)]
    if started:
        ctx.wake_scheduler()  # after the commit: elevations of the grants started are queued
    for grant in started:
        ctx.notifier.send("granted", {"grant": grant.id, "holder": grant.holder, "role": grant.role})
    return len(started)


def time_out_due(ctx: WorkflowContext, *, limit: int = BATCH) -> int:
    """Requests nobody reviewed before their deadline end as TIMED_OUT."""
    now = ctx.clock.now()
    count = 0
    with ctx.transaction(parks_audit=True) as conn:
        for req in q.due_timeouts(conn, now=now, limit=limit, skip_locked=ctx.db.locks_rows):
            if q.set_request_state(conn, req.id, expect=S.PENDING, state=S.TIMED_OUT, now=now):
                ctx.audit_event(conn, SYSTEM.name, "request.timed_out", request_id=req.id, role=req.role)
                count += 1
    return count


def warn_expiring(ctx: WorkflowContext, *, within: timedelta = EXPIRY_WARNING) -> int:
    now = ctx.clock.now()
    with ctx.transaction() as conn:
        soon = q.expiring_unwarned(conn, now=now, within=within, limit=BATCH)
        for grant in soon:
            q.mark_expiry_warned(conn, grant.id)
    for grant in soon:
        left = int((grant.expires_at - now).total_seconds())
        ctx.notifier.send("expiring", {"grant": grant.id, "holder": grant.holder, "seconds_left": left})
    return len(soon)


def backoff(ctx: WorkflowContext, attempts: int) -> timedelta:
    seconds = min(
        ctx.revocation_backoff_seconds * (2 ** min(attempts, 20)), ctx.revocation_backoff_max_seconds
    )
    return timedelta(seconds=seconds)


def run_revocations(
    ctx: WorkflowContext, *, limit: int = 50, workers: int = REVOCATION_WORKERS
) -> tuple[int, int]:
    """Try every due revocation once. Returns (succeeded, failed). Failures stay queued with backoff.

    Work is claimed by pushing ``next_attempt_at`` a lease ahead in one short transaction, so the
    slow call to the target happens outside any transaction and no other replica takes it too. The
    claimed batch is revoked by up to ``workers`` threads at once: most of a revocation is waiting
    on the target, and a thousand grants ending in the same second should not queue behind each
    other. Each outcome is recorded, with its audit event, in its own transaction.

    A target that cannot be reached at all (``TargetUnreachable``: refused, timed out, no such
    host) is not tried again in the same batch: its remaining items are recorded as failed at once,
    each with its audit event and the usual backoff, so a dead target costs the batch one wait, not
    one per item, and holds up no other target. So that several threads do not each wait on a dead
    target before one of them finds out, the first item of each target is tried alone; the rest of
    that target's items follow when it is done.
    """
    now = ctx.clock.now()
    until = now + REVOCATION_LEASE
    with ctx.transaction(parks_audit=True) as conn:
        due = issuance.due_revocations(conn, now=now, limit=limit, skip_locked=ctx.db.locks_rows)
        for found in due:
            issuance.claim_revocation(conn, found["id"], until=until)
    # The claim's end identifies this attempt: finishing checks nobody queued the item again since.
    claimed: list[Row] = [{**found, "claimed_until": until} for found in due]
    # Targets found unreachable in this batch, with the reason; shared by the threads under ``lock``.
    unreachable: dict[str, str] = {}
    lock = threading.Lock()
    if len(claimed) <= 1 or workers <= 1:
        outcomes = [_revoke(ctx, row, unreachable, lock) for row in claimed]
    else:
        by_target: dict[str, list[Row]] = {}
        for row in claimed:
            by_target.setdefault(row["target"], []).append(row)
        with ThreadPoolExecutor(
            max_workers=min(workers, len(claimed)), thread_name_prefix="jitgate-revoke"
        ) as pool:
            first = {
                pool.submit(_revoke, ctx, rows[0], unreachable, lock): rows[1:] for rows in by_target.values()
            }
            rest = [
                pool.submit(_revoke, ctx, row, unreachable, lock)
                for done in as_completed(first)
                for row in first[done]
            ]
            outcomes = [future.result() for future in (*first, *rest)]
    ok = sum(outcomes)
    return ok, len(outcomes) - ok


def _revoke(ctx: WorkflowContext, row: Row, unreachable: dict[str, str], lock: threading.Lock) -> bool:
    """One revocation attempt, recorded either way; True when the credential is gone.

    A target in ``unreachable`` (guarded by ``lock``) is not tried: the item is recorded as failed
    right away. A target found unreachable now is added to it.
    """
    name = row["target"]
    with lock:
        reason = unreachable.get(name)
    if reason is not None:
        _record_failure(ctx, row, f"not tried: target {name} unreachable a moment ago: {reason}")
        return False
    failure = None
    try:
        outcome = _attempt(ctx, row)
    except ElevationRefused as exc:
        if row["action"] == issuance.ELEVATE:
            grants.refuse_elevation(ctx, row, exc)
            return False
        failure = str(exc)
    except TargetUnreachable as exc:
        with lock:
            unreachable.setdefault(name, str(exc))
        failure = str(exc)
    except JitgateError as exc:
        failure = str(exc)
    except Exception as exc:
        log.exception("provider %s crashed working on %s", row["kind"], name)
        failure = f"provider crashed: {type(exc).__name__}"
    if failure is not None:
        _record_failure(ctx, row, failure)
        return False
    if row["action"] != issuance.REVOKE:
        return True  # elevations record their own outcome
    done = ctx.clock.now()
    with ctx.transaction(parks_audit=True) as conn:
        if not issuance.finish_revocation(conn, row["id"], done, claimed_until=row["claimed_until"]):
            log.info("revocation %s was queued again meanwhile; it will run once more", row["id"])
            return True
        issuance.mark_credential_revoked(conn, row["credential_id"], done)
        ctx.audit_event(
            conn,
            SYSTEM.name,
            "credential.revoked",
            grant_id=row["grant_id"],
            target=name,
            details={
                "kind": row["kind"],
                "handle": row["handle"],
                "attempts": row["attempts"] + 1,
                **({"outcome": dict(outcome)} if outcome else {}),
            },
        )
    return True


def _attempt(ctx: WorkflowContext, row: Row) -> Mapping[str, Any] | None:
    """Do the queued work at the target: revoke a credential (returning what became of what it
    left), or apply or take back an existing account's elevation (each records its own success)."""
    target = ctx.policy.target(row["target"])
    if target is None:
        raise ProviderError(f"target {row['target']} is no longer in the policy")
    if row["action"] == issuance.ELEVATE:
        elevation.apply(ctx, row, target)
        return None
    if row["action"] == issuance.WITHDRAW:
        elevation.withdraw(ctx, row, target, attempts=row["attempts"] + 1)
        return None
    return ctx.provider_for(target).revoke(target, row["handle"])


def _record_failure(ctx: WorkflowContext, row: Row, error: str) -> None:
    now = ctx.clock.now()
    attempts = row["attempts"] + 1
    with ctx.transaction(parks_audit=True) as conn:
        issuance.retry_revocation(
            conn,
            row["id"],
            error=error,
            next_attempt_at=now + backoff(ctx, attempts),
            claimed_until=row["claimed_until"],
        )
        ctx.audit_event(
            conn,
            SYSTEM.name,
            "elevation.failed" if row["action"] == issuance.ELEVATE else "revocation.failed",
            grant_id=row["grant_id"],
            target=row["target"],
            details={"kind": row["kind"], "handle": row["handle"], "attempt": attempts, "error": error},
        )
    work = {issuance.ELEVATE: "elevation", issuance.WITHDRAW: "withdrawal"}.get(row["action"], "revocation")
    log.warning("%s on %s failed (attempt %d): %s", work, row["target"], attempts, error)


class Every:
    """Lets a step run at most once per ``interval`` of the broker's clock."""

    def __init__(self, interval: timedelta) -> None:
        self.interval = interval
        self.last: datetime | None = None

    def due(self, now: datetime) -> bool:
        if self.last is not None and now - self.last < self.interval:
            return False
        self.last = now
        return True


def reap_sessions(ctx: WorkflowContext) -> int:
    """End gateway sessions whose gateway stopped; a failure is logged and tried at the next pass."""
    try:
        return sessions.reap_lost(ctx, stale_after=SESSION_STALE)
    except Exception:
        log.exception("ending lost gateway sessions failed; retrying later")
        return 0


def run_lifecycle(ctx: WorkflowContext, *, reap: Every | None = None) -> None:
    """One pass over the time-critical steps: scheduled starts, expiries, time-outs, warnings, and
    (when ``reap`` says it is due; always without it) the end of sessions lost with their gateway."""
    # Starting grants waits for a broken audit log (reported where it was found); ending does not.
    with contextlib.suppress(AuditIntegrityError):
        start_due(ctx)
    while expire_due(ctx) == BATCH:
        pass
    time_out_due(ctx)
    warn_expiring(ctx)
    if reap is None or reap.due(ctx.clock.now()):
        reap_sessions(ctx)
    if audit_state.watch(ctx).problem is None:
        checkpoint_audit(ctx)  # never copy out a head the broker does not trust
    ctx.db.checkpoint_wal()


def checkpoint_audit(ctx: WorkflowContext, *, force: bool = False) -> None:
    """Check the audit head, copy it out of the database and offer it to the witnesses.

    The head must be signed and not behind any head seen (else the broker's health shows why);
    the checkpoint moves only to a chain that holds the checkpointed record (``checkpoint.py``).
    """
    writer = ctx.audit_checkpoint
    if writer is None or not (force or writer.due()):
        return
    with ctx.db.read() as conn:
        try:
            head = ctx.audit.check_head(conn)
        except AuditIntegrityError:
            return  # logged, and kept as the broker's health, by the audit log
        if head is None:
            return
        moved = writer.update(head, checkpoint.hash_at(conn))
    if not moved.ok:
        log.error("the audit checkpoint was not moved: %s; run jitgate audit verify", moved.problem)
        return
    if ctx.audit_witness is not None:
        ctx.audit_witness.offer(head)


def run_once(ctx: WorkflowContext) -> None:
    """One pass over every kind of due work."""
    run_lifecycle(ctx)
    run_revocations(ctx)


class _Loop:
    """A thread that does ``work`` and then sleeps until ``next_due`` says, or until woken."""

    def __init__(
        self,
        name: str,
        ctx: WorkflowContext,
        work: Callable[[WorkflowContext], object],
        next_due: Callable[[Connection], datetime | None],
        poll: float,
    ) -> None:
        self._name = name
        self._ctx = ctx
        self._work = work
        self._next_due = next_due
        self._poll = poll
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.sleeping_until: datetime | None = None
        # When the last pass that did all its work began (broker clock): work due before it is done.
        self.completed_pass_started_at: datetime | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _pause(self) -> float:
        with self._ctx.db.read() as conn:
            deadline = self._next_due(conn)
        if deadline is None:
            return self._poll
        return max(0.0, min((deadline - self._ctx.clock.now()).total_seconds(), self._poll))

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            started = self._ctx.clock.now()
            try:
                self._work(self._ctx)
                self.completed_pass_started_at = started
                pause = self._pause()
            except Exception:
                log.exception("%s pass failed; retrying", self._name)
                pause = self._poll
            if pause > 0:
                self.sleeping_until = self._ctx.clock.now() + timedelta(seconds=pause)
                self.wake.wait(pause)
                self.sleeping_until = None


class Scheduler:
    """Two loops in threads: grant lifecycle (never held up by a slow target) and revocations.

    Each sleeps until the earliest deadline of its own work in the database (at most
    ``poll_seconds``, so work created by another replica is picked up), or until woken.
    """

    def __init__(self, ctx: WorkflowContext, *, poll_seconds: float = 1.0) -> None:
        self._ctx = ctx
        self._loops = (
            _Loop(
                "jitgate-lifecycle",
                ctx,
                functools.partial(run_lifecycle, reap=Every(REAP_EVERY)),
                q.next_lifecycle_deadline,
                poll_seconds,
            ),
            _Loop(
                "jitgate-revocations", ctx, run_revocations, issuance.next_revocation_attempt, poll_seconds
            ),
        )

    def wake(self, at: datetime | None = None) -> None:
        """Wake both loops now, or, given ``at``, the lifecycle loop only if it would sleep past it."""
        lifecycle, revocations = self._loops
        if at is None:
            lifecycle.wake.set()
            revocations.wake.set()
            return
        planned = lifecycle.sleeping_until
        if planned is None or at < planned:
            lifecycle.wake.set()

    def status(self) -> dict[str, str | None]:
        """For each loop, when its last complete pass began: everything due before then is done."""
        return {
            loop.thread.name: (
                loop.completed_pass_started_at.isoformat() if loop.completed_pass_started_at else None
            )
            for loop in self._loops
        }

    def start(self) -> None:
        for loop in self._loops:
            loop.thread.start()
        if self._ctx.audit_witness is not None:
            self._ctx.audit_witness.start()

    def stop(self) -> None:
        for loop in self._loops:
            loop.stopping.set()
            loop.wake.set()
        for loop in self._loops:
            if loop.thread.is_alive():
                loop.thread.join(timeout=10)
        if self._loops[0].thread.ident is not None:
            # The newest head goes out before the broker stops: a restart keeps its memory.
            try:
                checkpoint_audit(self._ctx, force=True)
            except JitgateError as exc:
                log.warning("no last audit checkpoint on stop: %s", exc)
        if self._ctx.audit_witness is not None:
            self._ctx.audit_witness.stop()
