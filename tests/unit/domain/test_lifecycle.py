"""The state machine and the review rules, without a database."""

from datetime import UTC, datetime, timedelta

import pytest

from jitgate.domain.lifecycle import (
    ALLOWED,
    check_duration,
    check_extension,
    check_transition,
    decide_review,
    grant_window,
)
from jitgate.domain.model import RequestState, Review, Verdict
from jitgate.errors import Conflict, InvalidInput, InvalidTransition, PolicyDenied

S = RequestState
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def review(**overrides: object) -> object:
    args: dict[str, object] = {
        "request_id": "r-1",
        "state": S.PENDING,
        "requester": "alice",
        "reviewer": "bob",
        "reviewer_eligible": True,
        "reviewer_is_admin": False,
        "prior": [],
        "verdict": Verdict.APPROVE,
        "approvals_required": 1,
        "comment": "",
    }
    args.update(overrides)
    return decide_review(**args)  # type: ignore[arg-type]


def test_final_states_lead_nowhere() -> None:
    for state in S:
        if state.is_final:
            assert ALLOWED[state] == frozenset()
            with pytest.raises(InvalidTransition, match="cannot"):
                check_transition("grant g-1", state, S.REVOKED)


def test_only_active_or_scheduled_grants_can_be_revoked() -> None:
    check_transition("grant g-1", S.ACTIVE, S.REVOKED)
    check_transition("grant g-1", S.APPROVED, S.REVOKED)
    with pytest.raises(InvalidTransition, match="grant g-1 is PENDING; cannot revoke it"):
        check_transition("grant g-1", S.PENDING, S.REVOKED)


def test_one_approval_reaches_a_threshold_of_one() -> None:
    assert review().state is S.APPROVED


def test_requester_can_never_review_their_own_request() -> None:
    with pytest.raises(PolicyDenied, match="cannot review their own"):
        review(reviewer="alice")
    with pytest.raises(PolicyDenied, match="cannot review their own"):
        review(reviewer="alice", reviewer_is_admin=True, verdict=Verdict.DENY, comment="no")


def test_ineligible_reviewer_is_refused_but_an_admin_may_deny() -> None:
    with pytest.raises(PolicyDenied, match="not an approver"):
        review(reviewer_eligible=False)
    with pytest.raises(PolicyDenied, match="not an approver"):
        review(reviewer_eligible=False, reviewer_is_admin=True)
    assert (
        review(reviewer_eligible=False, reviewer_is_admin=True, verdict=Verdict.DENY, comment="x").state
        is S.DENIED
    )


def test_one_vote_per_reviewer() -> None:
    prior = [Review("bob", Verdict.APPROVE, "", NOW)]
    with pytest.raises(Conflict, match="already reviewed"):
        review(prior=prior, approvals_required=2)


def test_two_person_rule_needs_two_different_approvers() -> None:
    assert review(approvals_required=2).state is S.PENDING
    prior = [Review("erin", Verdict.APPROVE, "", NOW)]
    assert review(prior=prior, approvals_required=2).state is S.APPROVED


def test_deny_wins_and_needs_a_reason() -> None:
    prior = [Review("erin", Verdict.APPROVE, "", NOW)]
    assert (
        review(prior=prior, approvals_required=2, verdict=Verdict.DENY, comment="no ticket").state is S.DENIED
    )
    with pytest.raises(InvalidInput, match="needs a comment"):
        review(verdict=Verdict.DENY, comment="  ")


def test_finished_requests_cannot_be_reviewed() -> None:
    for state in (S.ACTIVE, S.DENIED, S.EXPIRED, S.CANCELLED, S.TIMED_OUT):
        with pytest.raises(InvalidTransition, match="can no longer be reviewed"):
            review(state=state)


def test_durations_outside_the_role_are_refused() -> None:
    bounds = {"min_duration": timedelta(minutes=1), "max_duration": timedelta(hours=4)}
    check_duration("prod-shell", timedelta(hours=4), **bounds)
    with pytest.raises(InvalidInput, match="positive"):
        check_duration("prod-shell", timedelta(0), **bounds)
    with pytest.raises(InvalidInput, match="positive"):
        check_duration("prod-shell", timedelta(minutes=-5), **bounds)
    with pytest.raises(PolicyDenied, match="longer than role prod-shell's maximum of 4h"):
        check_duration("prod-shell", timedelta(hours=4, seconds=1), **bounds)
    with pytest.raises(PolicyDenied, match="shorter"):
        check_duration("prod-shell", timedelta(seconds=30), **bounds)


def test_window_counts_from_activation_not_from_the_request() -> None:
    assert grant_window(now=NOW, start_at=None, duration=timedelta(hours=1)) == (
        NOW,
        NOW + timedelta(hours=1),
    )
    later = NOW + timedelta(days=1)
    assert grant_window(now=NOW, start_at=later, duration=timedelta(hours=1)) == (
        later,
        later + timedelta(hours=1),
    )
    past = NOW - timedelta(hours=2)
    assert grant_window(now=NOW, start_at=past, duration=timedelta(hours=1)) == (
        NOW,
        NOW + timedelta(hours=1),
    )


def test_extension_stays_within_the_maximum() -> None:
    args = {
        "grant_id": "g-1",
        "role": "prod-shell",
        "state": S.ACTIVE,
        "starts_at": NOW,
        "expires_at": NOW + timedelta(hours=3),
        "max_duration": timedelta(hours=4),
        "now": NOW + timedelta(hours=1),
    }
    assert check_extension(extra=timedelta(hours=1), **args) == NOW + timedelta(hours=4)  # type: ignore[arg-type]
    with pytest.raises(PolicyDenied, match="would make it 4h1m long; role prod-shell allows at most 4h"):
        check_extension(extra=timedelta(hours=1, minutes=1), **args)  # type: ignore[arg-type]
    with pytest.raises(InvalidTransition, match="only an active grant"):
        check_extension(extra=timedelta(minutes=1), **{**args, "state": S.EXPIRED})  # type: ignore[arg-type]
