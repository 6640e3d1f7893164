"""Query functions for users' registered SSH public keys (``user_keys``). They never commit.

A key is looked up by its fingerprint on every public-key attempt at the SSH gateway, so that
lookup is one statement, built once, over the unique fingerprint index, joined to its holder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from jitgate.domain.identity import IdentityKind
from jitgate.store.accounts import UserRow
from jitgate.store.tables import user_keys, users


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: str
    holder: str
    fingerprint: str
    key_type: str
    public_key: str
    comment: str
    ephemeral: bool
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None

    def usable_at(self, now: datetime) -> bool:
        return now < self.expires_at


def _key(row: RowMapping) -> KeyRow:
    return KeyRow(
        id=row["id"],
        holder=row["holder"],
        fingerprint=row["fingerprint"],
        key_type=row["key_type"],
        public_key=row["public_key"],
        comment=row["comment"],
        ephemeral=bool(row["ephemeral"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
    )


key_of_row = _key


def insert_key(
    conn: Connection,
    *,
    key_id: str,
    holder: str,
    fingerprint: str,
    key_type: str,
    public_key: str,
    comment: str,
    ephemeral: bool,
    now: datetime,
    expires_at: datetime,
) -> None:
    conn.execute(
        user_keys.insert().values(
            id=key_id,
            holder=holder,
            fingerprint=fingerprint,
            key_type=key_type,
            public_key=public_key,
            comment=comment,
            ephemeral=ephemeral,
            created_at=now,
            expires_at=expires_at,
        )
    )


def get_key(conn: Connection, key_id: str, *, lock: bool = False) -> KeyRow | None:
    query = sa.select(user_keys).where(user_keys.c.id == key_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return _key(row) if row is not None else None


def fingerprint_taken(conn: Connection, fingerprint: str) -> bool:
    """Whether any key with this fingerprint is registered, by anyone, expired or not."""
    query = sa.select(user_keys.c.id).where(user_keys.c.fingerprint == fingerprint)
    return conn.execute(query).first() is not None


def list_keys(conn: Connection, *, holder: str | None) -> list[KeyRow]:
    query = sa.select(user_keys).order_by(user_keys.c.holder, user_keys.c.created_at, user_keys.c.id)
    if holder is not None:
        query = query.where(user_keys.c.holder == holder)
    return [_key(row) for row in conn.execute(query).mappings()]


def delete_key(conn: Connection, key_id: str) -> bool:
    return conn.execute(user_keys.delete().where(user_keys.c.id == key_id)).rowcount == 1


def delete_expired_ephemeral(conn: Connection, holder: str, now: datetime) -> list[str]:
    """Remove the holder's ephemeral keys that have ended; returns their ids."""
    ended = sa.and_(
        user_keys.c.holder == holder, user_keys.c.ephemeral.is_(True), user_keys.c.expires_at <= now
    )
    ids = sorted(conn.execute(sa.select(user_keys.c.id).where(ended)).scalars())
    if ids:
        conn.execute(user_keys.delete().where(user_keys.c.id.in_(ids)))
    return ids


# Built once: the gateway asks this for every public key a client offers.
_KEY_WITH_HOLDER = (
    sa.select(
        user_keys,
        users.c.kind.label("user_kind"),
        users.c.groups.label("user_groups"),
        users.c.admin.label("user_admin"),
        users.c.disabled.label("user_disabled"),
        users.c.created_at.label("user_created_at"),
    )
    .join(users, users.c.name == user_keys.c.holder)
    .where(user_keys.c.fingerprint == sa.bindparam("fingerprint"))
)


def key_with_holder(conn: Connection, fingerprint: str) -> tuple[KeyRow, UserRow] | None:
    """The key with this fingerprint and its holder's row, whatever their state (the caller decides).

    None also when the holder has no row in ``users`` (an identity the broker does not keep).
    """
    row = conn.execute(_KEY_WITH_HOLDER, {"fingerprint": fingerprint}).mappings().first()
    if row is None:
        return None
    holder = UserRow(
        name=row["holder"],
        kind=IdentityKind(row["user_kind"]),
        groups=tuple(row["user_groups"]),
        admin=bool(row["user_admin"]),
        disabled=bool(row["user_disabled"]),
        created_at=row["user_created_at"],
    )
    return _key(row), holder


_TOUCH = (
    user_keys.update()
    .where(
        user_keys.c.id == sa.bindparam("key_id"),
        sa.or_(user_keys.c.last_used_at.is_(None), user_keys.c.last_used_at <= sa.bindparam("stale")),
    )
    .values(last_used_at=sa.bindparam("now"))
)


def touch_key(conn: Connection, key_id: str, now: datetime, stale: datetime) -> bool:
    """Record a use at ``now`` unless one at or after ``stale`` is already recorded."""
    return conn.execute(_TOUCH, {"key_id": key_id, "now": now, "stale": stale}).rowcount == 1
