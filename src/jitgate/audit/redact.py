"""The audit record of a refusal: what the caller sent, recorded safely, and never itself refused.

A refusal is the audit record whose content the caller controls: the target they named, the id
in the URL, and the reason the broker gives, which may quote what they sent. Every refusal must
be recorded, so nothing the caller sends may make its record fail:

- a value shaped like a secret (``canonical.secret_shape``) is withheld: replaced by a marker
  naming the shape, its length and a keyed tag (``AuditLog.withheld_tag``), so the same value is
  recognisable across records but cannot be read back, or guessed at, from the log;
- text without a UTF-8 form (lone surrogates) has them escaped (``\\ud800``);
- long text is cut to a bound, saying how long it was;
- an id or role that does not fit its column moves into the details as ``given_<field>``.

Every other record is checked as before (``Event.checked``) and refused whole when it would
record a secret: there the step is refused, and its refusal is recorded through this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from jitgate.audit.canonical import encodable, secret_shape
from jitgate.audit.chain import COLUMN_LIMITS, Event

REFUSED = "access.refused"
MAX_TEXT = 256
"""Bound on one value the caller sent (a target, an id) as recorded."""
MAX_REASON = 1024
"""Bound on the reason of a refusal as recorded; the caller's own answer carries all of it."""

Tag = Callable[[str], str]


def recordable(value: str, tag: Tag, limit: int = MAX_TEXT) -> str:
    """``value`` as it can be recorded: secret-shaped values withheld, bad Unicode escaped, cut."""
    what = secret_shape(value)
    if what is not None:
        return f"[withheld {what}: {len(value)} chars, tag {tag(value)}]"
    text = value if encodable(value) else value.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        cut = f"…[{len(value)} chars]"
        text = text[: max(0, limit - len(cut))] + cut
    if secret_shape(text) is not None:  # escaping cannot complete a shape, but never rely on it
        return f"[withheld: {len(value)} chars, tag {tag(value)}]"
    return text


def _fits(value: str, limit: int) -> bool:
    # No NUL in a column: PostgreSQL refuses it, and the broker's database layer refuses it first.
    sound = "\x00" not in value and encodable(value)
    return 0 < len(value) <= limit and sound and secret_shape(value) is None


def refusal(
    *,
    at: datetime,
    actor: str,
    attempted: str,
    error: str,
    reason: str,
    tag: Tag,
    target: str | None = None,
    request_id: str | None = None,
    grant_id: str | None = None,
    role: str | None = None,
    details: Mapping[str, object] | None = None,
) -> Event:
    """The ``access.refused`` record of ``actor`` attempting ``attempted``; never raises.

    ``attempted`` and ``error`` are the broker's own words; everything else may come from the caller.
    """
    out: dict[str, object] = {
        key: recordable(value, tag) if isinstance(value, str) else value
        for key, value in (details or {}).items()
    }
    columns: dict[str, str | None] = {}
    for name, value in (("request_id", request_id), ("grant_id", grant_id), ("role", role)):
        if value is None or _fits(value, COLUMN_LIMITS[name]):
            columns[name] = value
        else:
            columns[name] = None
            out[f"given_{name}"] = recordable(value, tag)
    out.update({"attempted": attempted, "error": error, "reason": recordable(reason, tag, MAX_REASON)})
    who = actor if _fits(actor, COLUMN_LIMITS["actor"]) else recordable(actor, tag, COLUMN_LIMITS["actor"])
    try:
        return Event.checked(
            at=at,
            actor=who,
            action=REFUSED,
            target=None if target is None else recordable(target, tag),
            details=out,
            **columns,
        )
    except ValueError:
        # Only details the broker added itself can get here (a secret-looking key name, a value
        # with no JSON form): still record that the attempt was refused, with what is certain.
        return Event.checked(
            at=at,
            actor=who or "unknown",
            action=REFUSED,
            details={"attempted": attempted, "error": error, "reason": "[withheld: not recordable]"},
        )
