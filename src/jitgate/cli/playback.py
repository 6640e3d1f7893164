"""Replaying a shell recording (asciicast v2 or v3): the output events with the pauses between them.

``frames`` is pure: it only computes the pauses, so that the player is the one place that sleeps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from jitgate.errors import InvalidInput


def _header(line: str) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        raise InvalidInput("the recording is not an asciicast: its first line is not JSON") from None
    if not isinstance(header, dict) or header.get("version") not in (2, 3):
        raise InvalidInput("the recording is not an asciicast of version 2 or 3")
    return header


def frames(
    cast_text: str, *, speed: float = 1.0, idle_limit: float | None = None
) -> Iterator[tuple[float, str]]:
    """(seconds to wait before, text) for each output (``"o"``) event of an asciicast.

    Pauses are divided by ``speed``; a pause longer than ``idle_limit`` (default: the cast's own
    ``idle_time_limit``, if it has one) is cut to it first. Version 2 times events from the start,
    version 3 from the event before; other events (input, resize, markers) only pass time.
    """
    if not speed > 0:
        raise InvalidInput("speed must be greater than 0")
    lines = iter(cast_text.splitlines())
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise InvalidInput("the recording is empty")
    header = _header(first)
    relative = header["version"] == 3
    if idle_limit is None:
        limit = header.get("idle_time_limit")
        idle_limit = float(limit) if isinstance(limit, int | float) else None
    previous = 0.0
    pending = 0.0
    for number, line in enumerate(lines, start=2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            at, code, data = json.loads(line)
            at = float(at)
        except (ValueError, TypeError):
            raise InvalidInput(f"line {number} of the recording is not an event") from None
        gap = at if relative else at - previous
        previous = previous + at if relative else at
        gap = max(gap, 0.0)
        if idle_limit is not None:
            gap = min(gap, idle_limit)
        pending += gap
        if code == "o" and isinstance(data, str):
            yield pending / speed, data
            pending = 0.0
