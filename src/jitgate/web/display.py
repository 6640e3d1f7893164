"""How the access pages print times, time left, the input a refused form gave back, and what a
grant's elevations changed at their targets.

The time left is rendered here the way ``static/countdown.js`` then keeps it current, so a page
reads right without scripts and does not jump when the script starts.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from jitgate.domain.elevation_text import grant_lines
from jitgate.domain.text import printable

_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def parse_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def when(value: str | datetime | None) -> str:
    """``2026-12-02 09:30:00 UTC`` for an ISO time or datetime from a view; empty for none."""
    moment = parse_iso(value) if isinstance(value, str) or value is None else value
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else ""


def time_left(until: datetime, now: datetime) -> str:
    """``1h 5m 3s left``, ``59s left`` or ``expired``, as the countdown script writes it."""
    seconds = math.ceil((until - now) / timedelta(seconds=1))
    if seconds <= 0:
        return "expired"
    parts: list[str] = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count or parts:
            parts.append(f"{count}{unit}")
    parts.append(f"{seconds}s")
    return " ".join(parts) + " left"


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def kept(value: str) -> str:
    """Text a refused form sent, to put back in the form: characters the broker refuses (bidi
    overrides, controls) come back as visible escapes, never as themselves."""
    return printable(value)


def expiry(view: dict[str, object], now: datetime) -> dict[str, str]:
    """A grant view's end for a page: ``at`` to read, ``iso`` for the countdown element, ``left``
    (empty unless the grant is active) and ``now``, the server's time the page was made at,
    against which the script measures (the reader's clock may be off)."""
    raw = view.get("expires_at")
    ends = parse_iso(raw if isinstance(raw, str) else None)
    if ends is None:
        return {"at": "", "iso": "", "left": "", "now": iso(now)}
    left = time_left(ends, now) if view.get("state") == "ACTIVE" else ""
    return {"at": when(ends), "iso": iso(ends), "left": left, "now": iso(now)}


def changes(view: dict[str, object]) -> list[str]:
    """A grant view's elevations in words, one line per item and per pending piece of work; words
    a directory or a database sent back (an entry's DN, an error) come out inert."""
    return [printable(line) for line in grant_lines(view, when)]
