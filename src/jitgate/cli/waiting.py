"""``jitgate request --wait``: polling a request until its access can be used, or saying why not.

Done (exit 0): the grant is ACTIVE and every elevation of an existing account it makes has been
applied at its target (``elevations_pending`` is 0), so a job can go on and use it at once; or the
request is APPROVED to start later (``--start``). Not done, with one line on stderr: denied, timed
out in review or cancelled (exit 5, a refusal); the grant ended before its access was ready, as when
a target refuses an elevation (exit 7); still waiting at ``--wait-timeout`` (exit 11, and the request
stays open). The CLI has no push from the broker, so it polls, backing off from half a second to
five seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jitgate.cli.client import ApiClient
from jitgate.cli.exitcodes import WAIT_TIMED_OUT
from jitgate.domain.text import printable

FIRST_POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 5.0
REFUSED = 5
ENDED = 7


@dataclass(frozen=True, slots=True)
class Outcome:
    """How waiting ended: the exit code, and the one line that says why when it is not 0."""

    code: int
    line: str | None = None


def outcome(found: dict[str, Any]) -> Outcome | None:
    """What the request view ``found`` means for a waiting job; None while there is more to wait for."""
    state, rid = found["state"], found["id"]
    grant = found.get("grant") or {}
    if state == "PENDING" or (state == "ACTIVE" and grant.get("elevations_pending", 0)):
        return None
    if state in {"ACTIVE", "APPROVED"}:
        return Outcome(0)
    if state == "DENIED":
        denial = next((r for r in found.get("reviews", []) if r["verdict"] == "deny"), None)
        by = f" by {denial['reviewer']}: {denial['comment']}" if denial else ""
        return Outcome(REFUSED, f"request {rid} was denied{by}")
    ended = {
        "TIMED_OUT": (REFUSED, f"request {rid} timed out: nobody reviewed it in time"),
        "CANCELLED": (REFUSED, f"request {rid} was cancelled"),
        "EXPIRED": (ENDED, f"grant {grant.get('id')} ended (expired) before its access was ready"),
        "REVOKED": (ENDED, f"grant {grant.get('id')} ended (revoked) before its access was ready"),
    }
    code, line = ended.get(state, (1, f"request {rid} is {state}"))
    return Outcome(code, line)


def wait_for_access(
    client: ApiClient,
    found: dict[str, Any],
    timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any], Outcome]:
    """Poll the request ``found`` until ``outcome`` says it is settled or ``timeout`` seconds pass."""
    deadline = monotonic() + timeout
    interval = FIRST_POLL_SECONDS
    while (settled := outcome(found)) is None:
        left = deadline - monotonic()
        if left <= 0:
            return found, Outcome(WAIT_TIMED_OUT, f"still waiting after {timeout:g}s: {_waiting_for(found)}")
        sleep(min(interval, left))
        interval = min(interval * 1.5, MAX_POLL_SECONDS)
        found = client.get(f"/api/v1/requests/{found['id']}")
    return found, settled


def report(result: Outcome) -> None:
    """The one line on stderr for an outcome that is not success."""
    if result.line is not None:
        sys.stderr.write(printable(f"error: {result.line}") + "\n")


def _waiting_for(found: dict[str, Any]) -> str:
    grant = found.get("grant") or {}
    if found["state"] == "ACTIVE":
        count = grant.get("elevations_pending", 0)
        return (
            f"grant {grant.get('id')} is ACTIVE but {count} elevation{'s' if count != 1 else ''} "
            "of existing accounts not applied yet"
        )
    rid = found["id"]
    return f"request {rid} is {found['state']} (it stays open; jitgate cancel {rid} withdraws it)"
