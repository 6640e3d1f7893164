"""Human durations (``90s``, ``30m``, ``1h30m``, ``2d``) parsed to and printed from ``timedelta``."""

from __future__ import annotations

import re
from datetime import timedelta

from jitgate.errors import InvalidInput

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([wdhms])")
_WHOLE = re.compile(r"(?:\d+[wdhms])+")


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m`` style text; raises ``ValueError`` with a one-line reason."""
    value = text.strip().lower()
    if not _WHOLE.fullmatch(value):
        raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 30m, 1h30m, 2d)")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return timedelta(seconds=seconds)


def duration_argument(value: str | timedelta) -> timedelta:
    """A duration someone typed (or already a timedelta); ``InvalidInput`` when it is not one."""
    if isinstance(value, timedelta):
        return value
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


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
