"""The request/grant state machine and the review rules, as pure functions.

Every lifecycle step in the broker asks this module first; the workflow layer only persists what
these functions decide. A refusal is an exception whose message is one line for the person refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from jitgate.domain.durations import format_duration
from jitgate.domain.model import RequestState, Review, Verdict
from jitgate.errors import Conflict, InvalidInput, InvalidTransition, PolicyDenied

S = RequestState

ALLOWED: dict[RequestState, frozenset[RequestState]] = {
    S.PENDING: frozenset({S.APPROVED, S.ACTIVE, S.DENIED, S.CANCELLED, S.TIMED_OUT}),
    S.APPROVED: frozenset({S.ACTIVE, S.CANCELLED, S.REVOKED}),
    S.ACTIVE: frozenset({S.EXPIRED, S.REVOKED}),
    S.EXPIRED: frozenset(),
    S.REVOKED: frozenset(),
    S.DENIED: frozenset(),
    S.CANCELLED: frozenset(),
    S.TIMED_OUT: frozenset(),
}

_VERBS = {
    S.APPROVED: "approve",
    S.ACTIVE: "activate",
    S.DENIED: "deny",
    S.CANCELLED: "cancel",
    S.TIMED_OUT: "time out",
    S.EXPIRED: "expire",
    S.REVOKED: "revoke",
}


def check_transition(subject: str, current: RequestState, target: RequestState) -> None:
    """Raise ``InvalidTransition`` unless ``current -> target`` is a step of the lifecycle."""
    if target not in ALLOWED[current]:
        raise InvalidTransition(f"{subject} is {current.value}; cannot {_VERBS.get(target, target.value)} it")


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    """What a review does to its request: stays pending, reaches the threshold, or is denied."""

    state: RequestState
    approvals: int


def decide_review(
    *,
    request_id: str,
    state: RequestState,
    requester: str,
    reviewer: str,
    reviewer_eligible: bool,
    reviewer_is_admin: bool,
    prior: Iterable[Review],
    verdict: Verdict,
    approvals_required: int,
    comment: str,
) -> ReviewOutcome:
    """Apply one review. Deny wins at once; approvals count once per reviewer; never the requester.

    Admins may deny any pending request (to stop abuse) but approve only where policy names them.
    """
    if state is not S.PENDING:
        raise InvalidTransition(f"request {request_id} is {state.value}; it can no longer be reviewed")
    if reviewer == requester:
        raise PolicyDenied(f"{reviewer} cannot review their own request {request_id}")
    if not reviewer_eligible and not (verdict is Verdict.DENY and reviewer_is_admin):
        raise PolicyDenied(f"{reviewer} is not an approver for request {request_id}")
    if verdict is Verdict.DENY and not comment.strip():
        raise InvalidInput("a denial needs a comment saying why")
    prior = list(prior)
    if any(r.reviewer == reviewer for r in prior):
        raise Conflict(f"{reviewer} has already reviewed request {request_id}")
    if verdict is Verdict.DENY:
        return ReviewOutcome(S.DENIED, sum(r.verdict is Verdict.APPROVE for r in prior))
    approvals = 1 + sum(r.verdict is Verdict.APPROVE for r in prior)
    if approvals >= approvals_required:
        return ReviewOutcome(S.APPROVED, approvals)
    return ReviewOutcome(S.PENDING, approvals)


def check_duration(
    role: str, duration: timedelta, *, min_duration: timedelta, max_duration: timedelta
) -> None:
    """Refuse a zero, negative, too short or too long duration."""
    if duration <= timedelta(0):
        raise InvalidInput("duration must be positive")
    if duration < min_duration:
        raise PolicyDenied(
            f"{format_duration(duration)} is shorter than role {role}'s minimum of "
            f"{format_duration(min_duration)}"
        )
    if duration > max_duration:
        raise PolicyDenied(
            f"{format_duration(duration)} is longer than role {role}'s maximum of "
            f"{format_duration(max_duration)}"
        )


def grant_window(
    *, now: datetime, start_at: datetime | None, duration: timedelta
) -> tuple[datetime, datetime]:
    """The grant's window, counted from activation: waiting for reviewers never eats into it.

    A scheduled start that has already passed when the grant is approved starts now.
    """
    starts_at = max(now, start_at) if start_at is not None else now
    return starts_at, starts_at + duration


def check_extension(
    *,
    grant_id: str,
    role: str,
    state: RequestState,
    starts_at: datetime,
    expires_at: datetime,
    extra: timedelta,
    max_duration: timedelta,
    now: datetime,
) -> datetime:
    """Return the new ``expires_at`` for an extension, or refuse one that breaks the role's maximum."""
    if state is not S.ACTIVE or now >= expires_at:
        raise InvalidTransition(f"grant {grant_id} is {state.value}; only an active grant can be extended")
    if extra <= timedelta(0):
        raise InvalidInput("an extension must be positive")
    new_expiry = expires_at + extra
    total = new_expiry - starts_at
    if total > max_duration:
        raise PolicyDenied(
            f"extending grant {grant_id} by {format_duration(extra)} would make it "
            f"{format_duration(total)} long; role {role} allows at most {format_duration(max_duration)}"
        )
    return new_expiry
