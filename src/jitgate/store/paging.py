"""Keyset pages over requests, grants, gateway sessions, revocations and accounts, newest first,
so that no row is ever out of reach.

A cursor names the row a page ended (or began) at by its sort key and id, so a page is found by an
indexed range, never by an offset: rows added meanwhile neither shift nor hide others. Cursors are
opaque to callers (URL-safe base64 of the key) and refused whole when they do not decode.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from jitgate.domain.durations import instant_argument
from jitgate.domain.model import AccessRequest, Grant, RequestState
from jitgate.errors import InvalidInput
from jitgate.store import accounts
from jitgate.store import keys as k
from jitgate.store import queries as q
from jitgate.store import sessions as s
from jitgate.store.tables import api_tokens, gateway_sessions, grants, requests, revocations, user_keys, users

T = TypeVar("T")
DEFAULT_PAGE = 50
MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class Cursor:
    at: datetime
    id: str

    def encode(self) -> str:
        raw = f"{self.at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            at, _, row_id = raw.partition("|")
            parsed = datetime.fromisoformat(at)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidInput("cursor is not one this broker handed out") from None
        if not row_id or "\x00" in row_id or parsed.tzinfo is None:
            raise InvalidInput("cursor is not one this broker handed out")
        try:
            # The broker writes UTC; another offset may have no UTC form (year 1 at +14:00).
            return cls(instant_argument(parsed, "cursor"), row_id)
        except InvalidInput:
            raise InvalidInput("cursor is not one this broker handed out") from None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page, newest first; ``older``/``newer`` are the cursors to the pages beside it, if any."""

    items: list[T]
    older: str | None
    newer: str | None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
    return limit


def _page(
    conn: Connection,
    query: sa.Select[tuple[object, ...]],
    *,
    key: sa.ColumnElement[datetime],
    row_id: sa.ColumnElement[str],
    build: Callable[[RowMapping], T],
    key_of: Callable[[T], Cursor],
    limit: int,
    older_than: str | None,
    newer_than: str | None,
) -> Page[T]:
    check_limit(limit)
    if older_than is not None and newer_than is not None:
        raise InvalidInput("give one cursor, older or newer, not both")
    if newer_than is not None:
        c = Cursor.decode(newer_than)
        query = query.where(sa.or_(key > c.at, sa.and_(key == c.at, row_id > c.id)))
        rows = [build(r) for r in conn.execute(query.order_by(key, row_id).limit(limit + 1)).mappings()]
        more_newer = len(rows) > limit
        items = list(reversed(rows[:limit]))
        return Page(
            items,
            older=key_of(items[-1]).encode() if items else None,
            newer=key_of(items[0]).encode() if more_newer else None,
        )
    if older_than is not None:
        c = Cursor.decode(older_than)
        query = query.where(sa.or_(key < c.at, sa.and_(key == c.at, row_id < c.id)))
    ordered = query.order_by(key.desc(), row_id.desc()).limit(limit + 1)
    rows = [build(r) for r in conn.execute(ordered).mappings()]
    items = rows[:limit]
    return Page(
        items,
        older=key_of(items[-1]).encode() if len(rows) > limit else None,
        newer=key_of(items[0]).encode() if older_than is not None and items else None,
    )


def page_requests(
    conn: Connection,
    *,
    requester: str | None = None,
    states: Sequence[RequestState] = (),
    roles: Sequence[str] | None = None,
    or_requester: str | None = None,
    not_requester: str | None = None,
    limit: int = DEFAULT_PAGE,
    older_than: str | None = None,
    newer_than: str | None = None,
) -> Page[AccessRequest]:
    """Requests newest created first: of ``requester``, in ``states``, for ``roles`` (or else made
    by ``or_requester``), not made by ``not_requester`` -- each filter only when given."""
    query = _requests_where(
        sa.select(requests),
        requester=requester,
        states=states,
        roles=roles,
        or_requester=or_requester,
        not_requester=not_requester,
    )
    return _page(
        conn,
        query,
        key=requests.c.created_at,
        row_id=requests.c.id,
        build=q.request_of_row,
        key_of=lambda r: Cursor(r.created_at, r.id),
        limit=limit,
        older_than=older_than,
        newer_than=newer_than,
    )


def count_requests(
    conn: Connection,
    *,
    states: Sequence[RequestState] = (),
    roles: Sequence[str] | None = None,
    not_requester: str | None = None,
) -> int:
    """How many requests ``page_requests`` would page through with the same filters."""
    query = _requests_where(
        sa.select(sa.func.count()).select_from(requests),
        requester=None,
        states=states,
        roles=roles,
        or_requester=None,
        not_requester=not_requester,
    )
    return int(conn.execute(query).scalar_one())


def _requests_where(
    query: sa.Select[Any],
    *,
    requester: str | None,
    states: Sequence[RequestState],
    roles: Sequence[str] | None,
    or_requester: str | None,
    not_requester: str | None,
) -> sa.Select[Any]:
    if requester is not None:
        query = query.where(requests.c.requester == requester)
    if states:
        query = query.where(requests.c.state.in_([s.value for s in states]))
    if roles is not None:
        in_roles = requests.c.role.in_(list(roles))
        query = query.where(
            sa.or_(in_roles, requests.c.requester == or_requester) if or_requester else in_roles
        )
    if not_requester is not None:
        query = query.where(requests.c.requester != not_requester)
    return query


def page_grants(
    conn: Connection,
    *,
    holder: str | None = None,
    states: Sequence[RequestState] = (),
    limit: int = DEFAULT_PAGE,
    older_than: str | None = None,
    newer_than: str | None = None,
) -> Page[Grant]:
    """Grants (of ``holder``, in ``states`` when given), latest start first."""
    query = sa.select(grants)
    if holder is not None:
        query = query.where(grants.c.holder == holder)
    if states:
        query = query.where(grants.c.state.in_([s.value for s in states]))
    return _page(
        conn,
        query,
        key=grants.c.starts_at,
        row_id=grants.c.id,
        build=q.grant_of_row,
        key_of=lambda g: Cursor(g.starts_at, g.id),
        limit=limit,
        older_than=older_than,
        newer_than=newer_than,
    )


def page_sessions(
    conn: Connection,
    *,
    holder: str | None = None,
    active: bool = False,
    limit: int = DEFAULT_PAGE,
    older_than: str | None = None,
    newer_than: str | None = None,
) -> Page[s.SessionRow]:
    """Gateway sessions (of ``holder``, only live ones if ``active``), latest start first."""
    query = sa.select(gateway_sessions)
    if holder is not None:
        query = query.where(gateway_sessions.c.holder == holder)
    if active:
        query = query.where(gateway_sessions.c.state == s.LIVE)
    return _page(
        conn,
        query,
        key=gateway_sessions.c.started_at,
        row_id=gateway_sessions.c.id,
        build=s.session_of_row,
        key_of=lambda row: Cursor(row.started_at, row.id),
        limit=limit,
        older_than=older_than,
        newer_than=newer_than,
    )


def page_users(
    conn: Connection,
    *,
    limit: int = DEFAULT_PAGE,
    older_than: str | None = None,
    newer_than: str | None = None,
) -> Page[accounts.UserRow]:
    """Users and service accounts the broker keeps, latest created first."""
    return _page(
        conn,
        sa.select(users),
        key=users.c.created_at,
        row_id=users.c.name,
        build=accounts.user_of_row,
        key_of=lambda u: Cursor(u.created_at, u.name),
        limit=limit,
        older_than=older_than,
        newer_than=newer_than,
    )


def page_tokens(
    conn: Connection,
    *,
    user: str | None = None,
    limit: int = DEFAULT_PAGE,
    older_than: str | None = None,
    newer_than: str | None = None,
) -> Page[accounts.TokenRow]:
    """API tokens (of ``user`` when given), latest created first; the rows hold no secret."""
    query = sa.select(api_tokens)
    if user is not None:
        query = query.where(api_tokens.c.user_name == user)
    return _page(
        conn,
        query,
        key=api_tokens.c.created_at,
        row_id=api_tokens.c.id,
        build=accounts.token_of_row,
        key_of=lambda t: Cursor(t.created_at, t.id),
        limit=limit,
        older_than=older_than,
        newer_than=newer_than,
    )


def page_keys(
    conn: Connection,
    *,
    holder: str | None = None,
    limit: int = DEFAULT_PAGE,
    older_than: str | None = None,
    newer_than: str | None = None,
) -> Page[k.KeyRow]:
    """Registered SSH keys (of ``holder`` when given), latest registered first."""
    query = sa.select(user_keys)
    if holder is not None:
        query = query.where(user_keys.c.holder == holder)
    return _page(
        conn,
        query,
        key=user_keys.c.created_at,
        row_id=user_keys.c.id,
        build=k.key_of_row,
        key_of=lambda key: Cursor(key.created_at, key.id),
        limit=limit,
        older_than=older_than,
        newer_than=newer_than,
    )


def page_pending_revocations(
    conn: Connection,
    *,
    limit: int = DEFAULT_PAGE,
    older_than: str | None = None,
    newer_than: str | None = None,
) -> Page[RowMapping]:
    """Revocations still to be done, latest queued first."""
    # The id is a number; as text it still orders the rows one way, which is all a cursor needs.
    row_id = sa.cast(revocations.c.id, sa.String)
    return _page(
        conn,
        sa.select(revocations).where(revocations.c.state == "pending"),
        key=revocations.c.created_at,
        row_id=row_id,
        build=lambda row: row,
        key_of=lambda row: Cursor(row["created_at"], str(row["id"])),
        limit=limit,
        older_than=older_than,
        newer_than=newer_than,
    )
