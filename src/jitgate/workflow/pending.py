"""How many requests one requester may keep waiting for review at a time.

Without a bound, one requester could fill the approvers' queue and bury everyone else's requests.
The count is taken under a per-requester lock inside the submitting transaction, so concurrent
submissions cannot all see room for one more.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from jitgate.errors import TooManyPending
from jitgate.store import queries as q


def check_room(conn: Connection, requester: str, *, limit: int) -> None:
    """Refuse with ``TooManyPending`` if ``requester`` already has ``limit`` requests pending."""
    q.lock_requester(conn, requester)
    if q.pending_count_of(conn, requester) >= limit:
        raise TooManyPending(
            f"{requester} already has {limit} requests waiting for review, the most allowed; "
            "cancel one or wait for a decision"
        )
