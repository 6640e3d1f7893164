"""Failed authentications are throttled per source: a burst, then a steady trickle, never a flood."""

from __future__ import annotations

import pytest

from jitgate.auth.throttle import FailureThrottle, Throttled
from jitgate.errors import TooManyFailures


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(ticks: Ticks, *, limit: int = 5, max_sources: int = 10_000) -> FailureThrottle:
    """``limit`` failures a minute: one attempt back every ``60 / limit`` seconds."""
    return FailureThrottle(limit=limit, window_seconds=60, max_sources=max_sources, monotonic=ticks)


def test_a_source_is_throttled_after_its_burst_of_failures_and_told_when_to_come_back() -> None:
    ticks = Ticks()
    limiter = throttle(ticks)
    for _ in range(4):
        assert limiter.failed("10.0.0.1") is None
        limiter.check("10.0.0.1")
    started = limiter.failed("10.0.0.1")
    assert started == Throttled(source="10.0.0.1", failures=5, retry_after=pytest.approx(12.0))
    with pytest.raises(TooManyFailures) as refused:
        limiter.check("10.0.0.1")
    assert refused.value.retry_after == 12
    assert limiter.failures == 5
    assert limiter.refused == 1


def test_other_sources_are_not_touched_by_one_that_is_throttled() -> None:
    limiter = throttle(Ticks())
    for _ in range(5):
        limiter.failed("10.0.0.1")
    limiter.check("10.0.0.2")
    limiter.check("10.0.0.1 ")  # a different key is a different source
    with pytest.raises(TooManyFailures):
        limiter.check("10.0.0.1")


def test_a_throttled_source_earns_one_attempt_per_window_over_limit_and_refusals_cost_nothing() -> None:
    ticks = Ticks()
    limiter = throttle(ticks)
    for _ in range(5):
        limiter.failed("10.0.0.1")
    for _ in range(100):  # hammering while throttled does not push the release further out
        ticks.now += 0.1
        with pytest.raises(TooManyFailures):
            limiter.check("10.0.0.1")
    ticks.now += 2.0  # 12 s after the last failure
    limiter.check("10.0.0.1")
    assert limiter.failed("10.0.0.1") is None  # still the same episode: not reported again
    with pytest.raises(TooManyFailures):
        limiter.check("10.0.0.1")


def test_a_source_that_stops_failing_is_forgotten_and_a_new_episode_is_reported_again() -> None:
    ticks = Ticks()
    limiter = throttle(ticks)
    for _ in range(5):
        limiter.failed("10.0.0.1")
    ticks.now += 60
    limiter.check("10.0.0.1")
    assert limiter.sources() == 0
    reports = [limiter.failed("10.0.0.1") for _ in range(5)]
    assert reports[:4] == [None] * 4
    assert reports[4] is not None
    assert reports[4].failures == 5


def test_memory_is_bounded_by_dropping_the_least_recently_failed_sources() -> None:
    limiter = throttle(Ticks(), limit=1, max_sources=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert limiter.sources() == 100
    with pytest.raises(TooManyFailures):
        limiter.check("10.0.3.231")  # the last one, still remembered
    limiter.check("10.0.0.0")  # long dropped


def test_a_throttle_that_would_let_everything_through_or_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="limit >= 1"):
        FailureThrottle(limit=0)
