"""What ``jitgate request --wait`` makes of each state a request can be in, and how it polls: backing
off to five seconds, never sleeping past its time-out."""

from __future__ import annotations

from typing import Any

import pytest

from jitgate.cli.waiting import Outcome, outcome, wait_for_access


def view(
    state: str, *, pending: int | None = 0, reviews: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    grant = (
        None if state in {"PENDING", "DENIED", "TIMED_OUT", "CANCELLED"} else {"id": "g-1", "state": state}
    )
    if grant is not None and pending is not None:
        grant["elevations_pending"] = pending
    return {"id": "r-1", "state": state, "grant": grant, "reviews": reviews or []}


def test_pending_and_active_with_elevations_still_to_apply_keep_waiting() -> None:
    assert outcome(view("PENDING")) is None
    assert outcome(view("ACTIVE", pending=2)) is None


def test_active_with_everything_applied_and_approved_for_later_are_done() -> None:
    assert outcome(view("ACTIVE")) == Outcome(0)
    assert outcome(view("ACTIVE", pending=None)) == Outcome(0)  # a broker that elevates nothing
    assert outcome(view("APPROVED")) == Outcome(0)


@pytest.mark.parametrize(
    ("found", "code", "line"),
    [
        (
            view(
                "DENIED",
                reviews=[
                    {"verdict": "approve", "reviewer": "ann", "comment": ""},
                    {"verdict": "deny", "reviewer": "bob", "comment": "freeze"},
                ],
            ),
            5,
            "request r-1 was denied by bob: freeze",
        ),
        (view("TIMED_OUT"), 5, "request r-1 timed out: nobody reviewed it in time"),
        (view("CANCELLED"), 5, "request r-1 was cancelled"),
        (view("REVOKED", pending=1), 7, "grant g-1 ended (revoked) before its access was ready"),
        (view("EXPIRED"), 7, "grant g-1 ended (expired) before its access was ready"),
        (view("SOMETHING-NEW"), 1, "request r-1 is SOMETHING-NEW"),
    ],
)
def test_every_other_end_is_a_non_zero_code_with_one_line(
    found: dict[str, Any], code: int, line: str
) -> None:
    assert outcome(found) == Outcome(code, line)


class Broker:
    """Answers each poll with the next view; records nothing but how often it was asked."""

    def __init__(self, *views: dict[str, Any]) -> None:
        self.views = list(views)
        self.asked = 0

    def get(self, path: str) -> dict[str, Any]:
        assert path == "/api/v1/requests/r-1"
        self.asked += 1
        return self.views.pop(0) if self.views else view("PENDING")


def test_polls_back_off_to_five_seconds_and_stop_at_the_time_out() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        now[0] += seconds

    found, result = wait_for_access(Broker(), view("PENDING"), 20, sleep=sleep, monotonic=lambda: now[0])  # type: ignore[arg-type]
    assert result.code == 11
    assert (
        result.line
        == "still waiting after 20s: request r-1 is PENDING (it stays open; jitgate cancel r-1 withdraws it)"
    )
    assert slept[:4] == [0.5, 0.75, 1.125, 1.688]
    assert max(slept) == 5.0
    assert sum(slept) == pytest.approx(20)
    assert found["state"] == "PENDING"


def test_waiting_ends_at_the_first_view_that_settles_it() -> None:
    broker = Broker(view("ACTIVE", pending=1), view("ACTIVE", pending=0))
    found, result = wait_for_access(broker, view("PENDING"), 60, sleep=lambda _: None)  # type: ignore[arg-type]
    assert result == Outcome(0)
    assert broker.asked == 2
    assert found["grant"]["elevations_pending"] == 0
