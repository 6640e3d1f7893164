"""Playing a cast back: output frames with the delays between them, sped up and with idle time cut,
and a one-line refusal for anything that is not asciicast v2."""

from __future__ import annotations

import json

import pytest
from asciinema.asciicast import events as asciinema_events

from jitgate.errors import InvalidInput
from jitgate.gateway.playback import frames

EVENTS = [
    [0.2, "o", "a"],
    [0.9, "i", "x"],
    [7.5, "o", "b"],
    [7.5, "r", "90x30"],
    [20.0, "o", "c"],
    [20.25, "o", "d"],
]

HEADER = json.dumps(
    {"version": 2, "width": 80, "height": 24, "timestamp": 1_764_000_000, "env": {"TERM": "xterm"}}
)


def cast(*events: object, header: str = HEADER) -> str:
    return "\n".join([header, *(json.dumps(e, ensure_ascii=False) for e in events)]) + "\n"


def test_output_frames_carry_the_delay_before_them() -> None:
    text = cast(
        [0.5, "o", "a"], [0.7, "i", "x"], [1.0, "r", "100x30"], [1.5, "o", "b\u2028c"], [1.5, "o", "d"]
    )
    assert list(frames(text)) == [(0.5, "a"), (1.0, "b\u2028c"), (0.0, "d")]


def test_speed_divides_the_delays_and_the_idle_limit_cuts_long_pauses() -> None:
    text = cast([1.0, "o", "a"], [31.0, "o", "b"], [32.0, "o", "c"])
    assert list(frames(text, speed=2.0)) == [(0.5, "a"), (15.0, "b"), (0.5, "c")]
    assert list(frames(text, idle_limit=2.0)) == [(1.0, "a"), (2.0, "b"), (1.0, "c")]
    # A pause made of several events is cut gap by gap, as asciinema does.
    spread = cast([0.0, "o", "a"], [10.0, "i", "x"], [20.0, "o", "b"])
    assert list(frames(spread, idle_limit=3.0)) == [(0.0, "a"), (6.0, "b")]


@pytest.mark.parametrize(("speed", "idle_limit"), [(1.0, None), (2.0, None), (0.5, 3.0), (4.0, 1.0)])
def test_the_frames_come_when_asciinemas_own_player_shows_them(
    speed: float, idle_limit: float | None
) -> None:
    """The oracle: asciinema's player computes when each event is shown this way (player.py)."""
    timed = asciinema_events.to_relative_time(EVENTS)
    timed = asciinema_events.cap_relative_time(timed, idle_limit)
    timed = asciinema_events.to_absolute_time(timed)
    shown = [(t, text) for t, code, text in asciinema_events.adjust_speed(timed, speed) if code == "o"]
    at, ours = 0.0, []
    for delay, text in frames(cast(*EVENTS), speed=speed, idle_limit=idle_limit):
        at += delay
        ours.append((at, text))
    assert [text for _, text in ours] == [text for _, text in shown]
    assert [t for t, _ in ours] == pytest.approx([t for t, _ in shown])


def test_the_headers_idle_limit_applies_unless_the_caller_gives_one() -> None:
    header = json.dumps({"version": 2, "width": 80, "height": 24, "idle_time_limit": 1.0})
    text = cast([5.0, "o", "a"], header=header)
    assert list(frames(text)) == [(1.0, "a")]
    assert list(frames(text, idle_limit=4.0)) == [(4.0, "a")]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "first line is not a JSON header"),
        ("hello\n", "first line is not a JSON header"),
        ("[1, 2]\n", "not a JSON object"),
        ('{"version": 1, "width": 80, "height": 24}\n', "version is 1, not 2"),
        ('{"version": true, "width": 80, "height": 24}\n', "not 2"),
        ('{"version": 2, "height": 24}\n', "width is not a positive whole number"),
        ('{"version": 2, "width": 80, "height": 0}\n', "height is not a positive whole number"),
    ],
)
def test_anything_but_an_asciicast_v2_header_is_refused_at_once(text: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=r"^not an asciicast v2 recording: ") as refused:
        frames(text)  # refused before the first frame is asked for
    assert why in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("{oops", "line 2 is not JSON"),
        ('[1.0, "o"]', "line 2 is not an event"),
        ('["1.0", "o", "a"]', "line 2 has no time"),
        ('[-1, "o", "a"]', "line 2 has no time"),
        ('[1.0, "o", 5]', "line 2 has no event code and text"),
    ],
)
def test_a_malformed_event_is_refused_naming_its_line(line: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        list(frames(f"{HEADER}\n{line}\n"))


def test_time_going_back_is_refused() -> None:
    with pytest.raises(InvalidInput, match="line 3 goes back in time"):
        list(frames(cast([2.0, "o", "a"], [1.0, "o", "b"])))


@pytest.mark.parametrize("speed", [0.0, -1.0, float("inf"), float("nan")])
def test_a_speed_that_is_no_positive_number_is_refused(speed: float) -> None:
    with pytest.raises(InvalidInput, match="speed"):
        frames(cast(), speed=speed)
