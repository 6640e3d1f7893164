"""Human durations (``90s``, ``30m``, ``1h30m``, ``2d``) parsed to and printed from ``timedelta``,
and instants someone typed, checked before any arithmetic is done with them.

Both are bounded on the way in: a duration to ``LONGEST``, and an instant to one that has a UTC
form, so that every sum the broker later makes (``start + duration``, ``expiry + extension``,
``now + overlap``) stays far inside what ``datetime`` can represent and what databases store.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from jitgate.errors import InvalidInput

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"([0-9]+)([wdhms])")
_WHOLE = re.compile(r"(?:[0-9]+[wdhms])+")
MAX_TEXT = 32
"""Longer than any sensible duration; refused before it is read."""
LONGEST = timedelta(weeks=520)
"""Ten years: longer than any access window, role maximum, certificate or CA overlap."""


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m`` style text; raises ``ValueError`` with a one-line reason."""
    if len(text) > MAX_TEXT:
        raise ValueError(f"{text[:MAX_TEXT]!r}… is not a duration (use e.g. 90s, 30m, 1h30m, 2d)")
    value = text.strip().lower()
    if not _WHOLE.fullmatch(value):
        raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 30m, 1h30m, 2d)")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    if seconds > LONGEST.total_seconds():
        raise ValueError(f"{text!r} is longer than {format_duration(LONGEST)}, the longest duration accepted")
    return timedelta(seconds=seconds)


def duration_argument(value: str | timedelta) -> timedelta:
    """A duration someone typed (or already a timedelta); ``InvalidInput`` when it is not one."""
    if isinstance(value, timedelta):
        if value > LONGEST:
            raise InvalidInput(f"{format_duration(value)} is longer than {format_duration(LONGEST)}")
        return value
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def instant_argument(value: datetime, what: str) -> datetime:
    """An instant someone gave, as aware UTC; ``InvalidInput`` if it has no zone or no UTC form.

    ``0001-01-01T00:00+14:00`` is a valid ISO 8601 time whose UTC form is before year 1: every
    comparison or sum with it would raise ``OverflowError`` later, so it is refused here.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{what} needs a timezone (e.g. 2026-12-01T09:00Z)")
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(f"{what} is outside the range of dates that can be used") from None


def format_duration(delta: timedelta) -> str:
    """Print a timedelta in the same notation, largest units first (``1h30m``)."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    out = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
