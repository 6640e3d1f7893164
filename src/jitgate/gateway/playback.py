"""Playing a shell recording back: the output of an asciicast v2 file as timed frames. Pure.

``frames`` checks the header at once (a one-line ``InvalidInput`` for anything that is not an
asciicast v2 recording), then yields ``(delay, text)`` for each output event: ``delay`` is how
long to wait before showing ``text``. Gaps are measured between consecutive events of any kind,
capped at the idle limit (the caller's, else the header's ``idle_time_limit``), and divided by
``speed``, as asciinema's player does. A malformed event line is an ``InvalidInput`` naming it.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from typing import Any

from jitgate.errors import InvalidInput

_NOT_CAST = "not an asciicast v2 recording"


def frames(
    cast_text: str, *, speed: float = 1.0, idle_limit: float | None = None
) -> Iterator[tuple[float, str]]:
    """The output of the cast ``cast_text`` as ``(delay before, text)``; see the module docstring."""
    if not (isinstance(speed, int | float) and math.isfinite(speed) and speed > 0):
        raise InvalidInput("the playback speed must be a positive number")
    if idle_limit is not None and not (math.isfinite(idle_limit) and idle_limit > 0):
        raise InvalidInput("the idle limit must be a positive number of seconds")
    lines = io.StringIO(cast_text, newline="\n")  # only "\n" ends a line: JSON may hold U+2028
    header = _header(lines.readline())
    limit = idle_limit if idle_limit is not None else header.get("idle_time_limit")
    if not (isinstance(limit, int | float) and not isinstance(limit, bool) and limit > 0):
        limit = None
    return _frames(lines, speed, limit)


def _header(line: str) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        raise InvalidInput(f"{_NOT_CAST}: its first line is not a JSON header") from None
    if not isinstance(header, dict):
        raise InvalidInput(f"{_NOT_CAST}: its first line is not a JSON object")
    if header.get("version") != 2 or isinstance(header.get("version"), bool):
        raise InvalidInput(f"{_NOT_CAST}: the header's version is {header.get('version')!r}, not 2")
    for name in ("width", "height"):
        value = header.get(name)
        if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise InvalidInput(f"{_NOT_CAST}: the header's {name} is not a positive whole number")
    return header


def _frames(lines: io.StringIO, speed: float, limit: float | None) -> Iterator[tuple[float, str]]:
    previous = 0.0  # the time of the event before, as recorded
    played = 0.0  # the same moment after idle gaps were cut
    shown = 0.0  # when the last frame was shown, in played time
    for number, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        at, code, data = _event(line, number)
        if at < previous:
            raise InvalidInput(f"{_NOT_CAST}: line {number} goes back in time")
        gap = at - previous
        played += min(gap, limit) if limit is not None else gap
        previous = at
        if code == "o":
            yield (played - shown) / speed, data
            shown = played


def _event(line: str, number: int) -> tuple[float, str, str]:
    try:
        event = json.loads(line)
    except ValueError:
        raise InvalidInput(f"{_NOT_CAST}: line {number} is not JSON") from None
    if not (isinstance(event, list) and len(event) == 3):
        raise InvalidInput(f"{_NOT_CAST}: line {number} is not an event [time, code, data]")
    at, code, data = event
    if not (isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at) and at >= 0):
        raise InvalidInput(f"{_NOT_CAST}: line {number} has no time in seconds")
    if not (isinstance(code, str) and isinstance(data, str)):
        raise InvalidInput(f"{_NOT_CAST}: line {number} has no event code and text")
    return float(at), code, data
