"""Whether the audit log can be extended, said loudly, and its parked records returned once it can.

While the audit log is broken, granting fails closed and ending access goes on with its records
parked (``audit/backlog.py``). This module is how that state is seen: ``status`` (health and
metrics, read from the database so every replica reports the same), one log line per change of
state in each process (``AuditHealth``), and ``watch``, run by the scheduler every pass, which
appends the parked records as soon as the log can be extended again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jitgate.audit import backlog
from jitgate.domain.identity import SYSTEM
from jitgate.errors import AuditIntegrityError

if TYPE_CHECKING:
    from jitgate.workflow.context import WorkflowContext

log = logging.getLogger("jitgate.audit")


class AuditHealth:
    """This process's last word on the audit log; logs each change of state once, not each record."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problem: str | None = None

    @property
    def problem(self) -> str | None:
        return self._problem

    def broken(self, problem: str) -> None:
        with self._lock:
            was, self._problem = self._problem, problem
        if was is None:
            log.error(
                "audit log broken, nothing more is appended to it: %s. Granting is refused; access "
                "still ends on time and its audit records are parked until the log is repaired "
                "(jitgate audit verify, then jitgate audit repair)",
                problem,
            )

    def healthy(self) -> None:
        with self._lock:
            was, self._problem = self._problem, None
        if was is not None:
            log.warning("audit log can be extended again; granting resumes")


@dataclass(frozen=True, slots=True)
class AuditStatus:
    """``problem`` is why the log cannot be extended (None: it can); ``parked`` records wait."""

    problem: str | None
    parked: int

    @property
    def healthy(self) -> bool:
        return self.problem is None and self.parked == 0


def status(ctx: WorkflowContext) -> AuditStatus:
    """Ask the audit log, as an append would, whether it can be extended; count parked records."""
    with ctx.db.read() as conn:
        try:
            ctx.audit.check(conn)
            problem = None
        except AuditIntegrityError as exc:
            problem = exc.message
        parked = backlog.count(conn)
    if problem is not None:
        ctx.audit_health.broken(problem)
    elif parked == 0:
        # With records parked, only appending them proves the log can be extended again.
        ctx.audit_health.healthy()
    return AuditStatus(problem, parked)


def watch(ctx: WorkflowContext) -> AuditStatus:
    """Note the audit log's state; once it can be extended, append what was parked (exactly once)."""
    found = status(ctx)
    if found.problem is not None or found.parked == 0:
        return found
    try:
        with ctx.db.write() as conn:
            moved = backlog.unpark(conn, ctx.audit, now=ctx.clock.now(), actor=SYSTEM.name)
    except AuditIntegrityError as exc:
        ctx.audit_health.broken(exc.message)
        return AuditStatus(exc.message, found.parked)
    ctx.audit_health.healthy()
    if moved:
        log.warning("appended %d audit records parked while the audit log was broken", moved)
    return AuditStatus(None, 0)
