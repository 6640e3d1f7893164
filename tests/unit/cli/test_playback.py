"""A shell recording replays as its output events, each after the pause before it: scaled by the
speed, long pauses cut to the idle limit, input and resizes only passing time."""

from __future__ import annotations

import pytest

from jitgate.cli.playback import frames
from jitgate.errors import InvalidInput

V2 = (
    '{"version": 2, "width": 80, "height": 24}\n'
    '[0.5, "o", "$ "]\n'
    '[1.0, "i", "l"]\n'
    '[1.5, "o", "ls\\r\\n"]\n'
    '[11.5, "r", "100x30"]\n'
    '[12.0, "o", "done"]\n'
)


def test_v2_events_are_timed_from_the_start_and_only_output_is_shown() -> None:
    assert list(frames(V2)) == [(0.5, "$ "), (1.0, "ls\r\n"), (10.5, "done")]


def test_speed_divides_every_pause() -> None:
    assert [delay for delay, _ in frames(V2, speed=2)] == [0.25, 0.5, 5.25]


def test_idle_limit_cuts_each_pause_before_the_speed_applies() -> None:
    assert [delay for delay, _ in frames(V2, idle_limit=2.0, speed=2)] == [0.25, 0.5, 1.25]


def test_the_casts_own_idle_limit_applies_unless_one_is_given() -> None:
    cast = '{"version": 2, "width": 80, "height": 24, "idle_time_limit": 1}\n[5, "o", "a"]\n'
    assert list(frames(cast)) == [(1.0, "a")]
    assert list(frames(cast, idle_limit=3.0)) == [(3.0, "a")]


def test_v3_events_are_timed_from_the_one_before() -> None:
    cast = (
        '{"version": 3, "term": {"cols": 80, "rows": 24}}\n'
        '[0.5, "o", "a"]\n# note\n[0.25, "m", ""]\n[1, "o", "b"]\n'
    )
    assert list(frames(cast)) == [(0.5, "a"), (1.25, "b")]


@pytest.mark.parametrize(
    ("cast", "problem"),
    [
        ("", "empty"),
        ("not json\n", "first line is not JSON"),
        ('{"version": 1}\n', "version 2 or 3"),
        ('{"version": 2}\n[1, "o"]\n', "line 2"),
        ('{"version": 2}\n["x", "o", "a"]\n', "line 2"),
    ],
)
def test_what_is_not_an_asciicast_is_refused_in_one_line(cast: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        list(frames(cast))


def test_speed_must_be_positive() -> None:
    with pytest.raises(InvalidInput, match="speed"):
        list(frames(V2, speed=0))
