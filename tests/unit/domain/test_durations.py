"""Durations are written the way people say them and refused when they mean nothing."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from jitgate.domain.durations import (
    LONGEST,
    duration_argument,
    format_duration,
    instant_argument,
    parse_duration,
)
from jitgate.errors import InvalidInput


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


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("99999999999w", "longest duration accepted"),  # timedelta(weeks=…) would overflow
        ("999999999d", "longest duration accepted"),  # fits a timedelta, not a date sum
        ("521w", "longest duration accepted"),
        ("9" * 31 + "s", "longest duration accepted"),
        ("9" * 5000 + "s", "is not a duration"),  # refused before int() is asked to read it
        ("nan", "is not a duration"),
        ("inf", "is not a duration"),
        ("1e9s", "is not a duration"),
        ("٣m", "is not a duration"),  # Arabic-Indic three: only ASCII digits count
    ],
)
def test_refuses_durations_too_long_to_compute_with_or_not_written_in_ascii(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as refused:
        parse_duration(text)
    assert "\n" not in str(refused.value)
    assert len(str(refused.value)) < 120


def test_the_longest_duration_is_accepted_and_leaves_room_for_every_date_sum() -> None:
    assert parse_duration("520w") == LONGEST
    far = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(days=90) + LONGEST + LONGEST
    assert far.year < 2100
    with pytest.raises(InvalidInput, match="longer than 520w"):
        duration_argument(timedelta(days=999_999_999))


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), "outside the range"),
        (datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))), "outside the range"),
        (datetime(2026, 12, 1, 9, 0), "needs a timezone"),  # noqa: DTZ001 - the naive time under test
    ],
)
def test_instants_without_a_zone_or_a_utc_form_are_refused(value: datetime, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        instant_argument(value, "start time")


def test_instants_at_the_ends_of_the_calendar_in_utc_are_accepted() -> None:
    assert instant_argument(datetime(1, 1, 1, tzinfo=UTC), "since").year == 1
    east = datetime(2026, 12, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    assert instant_argument(east, "since") == datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
