"""Durations are written the way people say them and refused when they mean nothing."""

from datetime import timedelta

import pytest

from jitgate.domain.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h30m", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        (" 1H ", timedelta(hours=1)),
    ],
)
def test_parses_human_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["forever", "", "0s", "0m", "-5m", "1.5h", "10", "h", "1h-30m"])
def test_refuses_durations_that_mean_nothing(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_formats_round_trip() -> None:
    for text in ["90s", "1h30m", "2d", "4h"]:
        assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)
    assert format_duration(timedelta(minutes=90)) == "1h30m"
