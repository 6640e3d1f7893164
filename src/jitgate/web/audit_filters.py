"""The audit page's filters and record links, read from its URL, and records made readable.

A filter someone typed that cannot be used (a date that is not one, a name longer than any the
log holds) is refused with one line naming it; the page keeps what was typed so it can be fixed.
Record numbers in paging links are only ever those the broker wrote (``pages.record_number``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from starlette.datastructures import QueryParams

from jitgate.audit.chain import COLUMN_LIMITS
from jitgate.domain.durations import instant_argument
from jitgate.errors import InvalidInput
from jitgate.web.pages import record_number

TEXT_FILTERS = {
    "actor": "actor",
    "role": "role",
    "action": "action",
    "request": "request_id",
    "grant": "grant_id",
}
"""Each text filter's name in the URL and the audit column (and ``COLUMN_LIMITS`` entry) it filters."""
TIME_FILTERS = ("since", "until")
FILTERS = (*TEXT_FILTERS, *TIME_FILTERS)
EXAMPLE_TIME = "2026-12-01 or 2026-12-01T09:00Z"


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """What the records shown must match (None: anything), and where the page starts."""

    actor: str | None = None
    role: str | None = None
    action: str | None = None
    request_id: str | None = None
    grant_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None
    after: int | None = None

    def query_args(self) -> dict[str, Any]:
        """The filters as arguments of ``audit.query.query`` (paging not included)."""
        return {
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "request_id": self.request_id,
            "grant_id": self.grant_id,
            "since": self.since,
            "until": self.until,
        }


def typed(params: QueryParams) -> dict[str, str]:
    """The filters as typed, to show them again in the form."""
    return {name: params.get(name, "") for name in FILTERS}


def parse_filters(params: QueryParams) -> AuditFilters:
    """The filters in the page's URL; ``InvalidInput`` naming the first one that cannot be used."""
    text: dict[str, str | None] = {}
    for name, column in TEXT_FILTERS.items():
        value = params.get(name, "").strip()
        if len(value) > COLUMN_LIMITS[column]:
            raise InvalidInput(f"{name} is at most {COLUMN_LIMITS[column]} characters")
        text[column] = value or None
    since = parse_instant(params.get("since", ""), "since")
    until = parse_instant(params.get("until", ""), "until")
    if since is not None and until is not None and since >= until:
        raise InvalidInput("since must be before until")
    return AuditFilters(
        **text,
        since=since,
        until=until,
        before=record_number(params.get("before", "")),
        after=record_number(params.get("after", "")),
    )


def parse_instant(text: str, what: str) -> datetime | None:
    """A date (midnight UTC) or an ISO 8601 time (UTC unless it says otherwise); None if empty."""
    value = text.strip()
    if not value:
        return None
    try:
        if len(value) == len("2026-12-01"):
            day = date.fromisoformat(value)
            parsed = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{what} is not a date or time like {EXAMPLE_TIME}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # the page shows times in UTC, and says so
    return instant_argument(parsed, what)


def readable(details: dict[str, Any]) -> list[tuple[str, str]]:
    """A record's details as ``(key, text)`` pairs: nested keys dotted, lists of plain values
    joined by commas, anything else as compact JSON; sorted by key."""
    out: list[tuple[str, str]] = []
    _flatten(details, "", out)
    out.sort()
    return out


_AS_IS: dict[type, Callable[[Any], str]] = {str: str, int: str, float: repr}
"""Plain values shown as they are (most details are); the rest is shown as JSON."""


def _flatten(value: dict[str, Any], prefix: str, out: list[tuple[str, str]]) -> None:
    # Runs for every detail of the 200 records on a page: plain values take the shortest path.
    for key, item in value.items():
        name = f"{prefix}{key}" if prefix else key
        kind = type(item)
        if kind in _AS_IS:
            out.append((name, _AS_IS[kind](item)))
        elif kind is dict and item:
            _flatten(item, f"{name}.", out)
        elif kind is list and all(type(x) in _AS_IS for x in item):
            out.append((name, ", ".join(_AS_IS[type(x)](x) for x in item) if item else "none"))
        else:
            out.append((name, json.dumps(item, ensure_ascii=False, sort_keys=True)))
