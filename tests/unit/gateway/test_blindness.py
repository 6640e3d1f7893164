"""A gateway that cannot read its sessions' grants for long ends them all: it fails closed."""

from __future__ import annotations

from jitgate.gateway.service import Blindness


def test_reads_failing_for_the_limit_end_everything_and_one_good_read_starts_over() -> None:
    now = [100.0]
    blind = Blindness(10.0, monotonic=lambda: now[0])
    assert not blind.failed()
    now[0] += 9.9
    assert not blind.failed()
    now[0] += 0.1
    assert blind.failed()
    blind.recovered()
    now[0] += 5
    assert not blind.failed()
    now[0] += 10
    assert blind.failed()
