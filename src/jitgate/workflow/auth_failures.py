"""Failed authentications: counted per source by the throttle, audited once per throttled episode.

A failure itself is not audited (a guessing client would flood the log with it); the moment a
source starts being throttled is, with how many failures brought it there, in its own
transaction. Counting never waits for the database; only that one record does.
"""

from __future__ import annotations

import logging

from jitgate.auth.throttle import FailureThrottle, Throttled
from jitgate.domain.identity import SYSTEM
from jitgate.errors import StorageUnavailable
from jitgate.workflow.context import WorkflowContext

log = logging.getLogger("jitgate.auth")


def audit_throttled(ctx: WorkflowContext, throttle: FailureThrottle, started: Throttled, via: str) -> None:
    """Record ``auth.throttled``: ``started.source`` is refused for a while after its failures."""
    log.warning(
        "authentication throttled for %s after %d failures (%s)", started.source, started.failures, via
    )
    try:
        with ctx.transaction() as conn:
            ctx.audit_event(
                conn,
                SYSTEM.name,
                "auth.throttled",
                details={
                    "source": started.source,
                    "failures": started.failures,
                    "via": via,
                    "limit": throttle.limit,
                    "retry_after_seconds": round(started.retry_after, 1),
                },
            )
    except StorageUnavailable:
        # The throttle holds regardless; the log line above is the trace of this episode.
        log.exception("could not audit the throttling of %s", started.source)
