"""Query functions for accounts: users' state, API tokens and web sessions. They never commit.

Kept apart from ``queries`` (requests, grants, revocations): these rows decide who is calling,
not what they hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from jitgate.domain.identity import Identity, IdentityKind, WorkloadProof
from jitgate.domain.text import printable
from jitgate.errors import NotFound
from jitgate.store.tables import api_tokens, users, web_sessions


@dataclass(frozen=True, slots=True)
class UserRow:
    name: str
    kind: IdentityKind
    groups: tuple[str, ...]
    admin: bool
    disabled: bool
    created_at: datetime

    def identity(self, source: str, expires_at: datetime | None = None) -> Identity:
        return Identity(
            name=self.name,
            groups=frozenset(self.groups),
            admin=self.admin,
            kind=self.kind,
            source=source,
            expires_at=expires_at,
        )


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    user: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


def _user(row: RowMapping) -> UserRow:
    return UserRow(
        name=row["name"],
        kind=IdentityKind(row["kind"]),
        groups=tuple(row["groups"]),
        admin=bool(row["admin"]),
        disabled=bool(row["disabled"]),
        created_at=row["created_at"],
    )


def _token(row: RowMapping) -> TokenRow:
    return TokenRow(
        id=row["id"],
        user=row["user_name"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


user_of_row = _user
token_of_row = _token


# --- users ----------------------------------------------------------------------------------


def get_user(conn: Connection, name: str, *, lock: bool = False) -> UserRow | None:
    row = conn.execute(_GET_USER_LOCKED if lock else _GET_USER, {"name": name}).mappings().first()
    return _user(row) if row is not None else None


# Built once: every grant's activation reads its holder's row.
_GET_USER = sa.select(users).where(users.c.name == sa.bindparam("name"))
_GET_USER_LOCKED = _GET_USER.with_for_update()


def locked_user(conn: Connection, name: str) -> UserRow:
    found = get_user(conn, name, lock=True)
    if found is None:
        raise NotFound(f"no user {name}")
    return found


def all_users(conn: Connection) -> list[UserRow]:
    return [_user(row) for row in conn.execute(sa.select(users).order_by(users.c.name)).mappings()]


def set_user_disabled(conn: Connection, name: str, disabled: bool) -> None:
    conn.execute(users.update().where(users.c.name == name).values(disabled=disabled))


def set_user_groups(conn: Connection, name: str, groups: Sequence[str]) -> None:
    conn.execute(users.update().where(users.c.name == name).values(groups=sorted(set(groups))))


def is_disabled(conn: Connection, name: str) -> bool:
    """True for a local user who is disabled; False for enabled users and external identities."""
    found = conn.execute(sa.select(users.c.disabled).where(users.c.name == name)).scalar_one_or_none()
    return bool(found)


# --- API tokens -----------------------------------------------------------------------------


def insert_token(
    conn: Connection, *, token_id: str, token_hash: str, user: str, now: datetime, expires_at: datetime
) -> None:
    conn.execute(
        api_tokens.insert().values(
            id=token_id, token_hash=token_hash, user_name=user, created_at=now, expires_at=expires_at
        )
    )


_TOKEN_BY_HASH = (
    sa.select(api_tokens, users.c.kind, users.c.groups, users.c.admin, users.c.disabled)
    .join(users, api_tokens.c.user_name == users.c.name)
    .where(api_tokens.c.token_hash == sa.bindparam("token_hash"))
)


def token_by_hash(conn: Connection, token_hash: str) -> tuple[TokenRow, UserRow] | None:
    """The token with this hash and its owner, whatever their state (the caller decides)."""
    row = conn.execute(_TOKEN_BY_HASH, {"token_hash": token_hash}).mappings().first()
    if row is None:
        return None
    owner = UserRow(
        name=row["user_name"],
        kind=IdentityKind(row["kind"]),
        groups=tuple(row["groups"]),
        admin=bool(row["admin"]),
        disabled=bool(row["disabled"]),
        created_at=row["created_at"],
    )
    return _token(row), owner


def get_token(conn: Connection, token_id: str, *, lock: bool = False) -> TokenRow | None:
    query = sa.select(api_tokens).where(api_tokens.c.id == token_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return _token(row) if row is not None else None


def list_tokens(conn: Connection, *, user: str | None) -> list[TokenRow]:
    query = sa.select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.id)
    if user is not None:
        query = query.where(api_tokens.c.user_name == user)
    return [_token(row) for row in conn.execute(query).mappings()]


def revoke_token(conn: Connection, token_id: str, now: datetime) -> bool:
    """Revoke a token that is not revoked yet; False if it already was."""
    done = conn.execute(
        api_tokens.update()
        .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return done.rowcount == 1


def touch_token(conn: Connection, token_id: str, now: datetime) -> None:
    conn.execute(api_tokens.update().where(api_tokens.c.id == token_id).values(last_used_at=now))


# --- web sessions ---------------------------------------------------------------------------


def insert_session(
    conn: Connection,
    *,
    id_hash: str,
    identity: Identity,
    token_id: str | None,
    now: datetime,
    expires_at: datetime,
    oidc: dict[str, Any] | None = None,
    flash: dict[str, str] | None = None,
) -> None:
    conn.execute(
        web_sessions.insert().values(
            id_hash=id_hash,
            user_name=identity.name,
            token_id=token_id,
            identity=identity_json(identity),
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
            oidc=oidc,
            flash=flash,
        )
    )


def get_session(conn: Connection, id_hash: str) -> RowMapping | None:
    """The session row, with its token's end and revocation and its user's state when local."""
    query = (
        sa.select(
            web_sessions,
            api_tokens.c.revoked_at.label("token_revoked_at"),
            api_tokens.c.expires_at.label("token_expires_at"),
            users.c.disabled.label("user_disabled"),
            users.c.groups.label("user_groups"),
            users.c.admin.label("user_admin"),
        )
        .outerjoin(api_tokens, api_tokens.c.id == web_sessions.c.token_id)
        .outerjoin(users, users.c.name == web_sessions.c.user_name)
        .where(web_sessions.c.id_hash == id_hash)
    )
    return conn.execute(query).mappings().first()


def lock_session(conn: Connection, id_hash: str) -> RowMapping | None:
    """The bare session row, locked for a change that depends on what it holds."""
    query = sa.select(web_sessions).where(web_sessions.c.id_hash == id_hash).with_for_update()
    return conn.execute(query).mappings().first()


def set_session_oidc(
    conn: Connection, id_hash: str, oidc: dict[str, Any], identity: Identity | None = None
) -> None:
    """Store what the provider said at a re-check (and the identity it gives, if it changed)."""
    values: dict[str, Any] = {"oidc": oidc}
    if identity is not None:
        values["identity"] = identity_json(identity)
    conn.execute(web_sessions.update().where(web_sessions.c.id_hash == id_hash).values(**values))


def touch_session(conn: Connection, id_hash: str, now: datetime) -> None:
    conn.execute(web_sessions.update().where(web_sessions.c.id_hash == id_hash).values(last_seen_at=now))


def set_flash(conn: Connection, id_hash: str, flash: dict[str, str] | None) -> None:
    conn.execute(web_sessions.update().where(web_sessions.c.id_hash == id_hash).values(flash=flash))


def delete_session(conn: Connection, id_hash: str) -> None:
    conn.execute(web_sessions.delete().where(web_sessions.c.id_hash == id_hash))


def delete_sessions_of(conn: Connection, user: str) -> int:
    return conn.execute(web_sessions.delete().where(web_sessions.c.user_name == user)).rowcount


def delete_sessions_of_token(conn: Connection, token_id: str) -> int:
    return conn.execute(web_sessions.delete().where(web_sessions.c.token_id == token_id)).rowcount


def live_sessions(conn: Connection, now: datetime, *, limit: int) -> list[RowMapping]:
    """Console sessions not yet ended, the most recently seen first (no id, no tokens)."""
    query = (
        sa.select(
            web_sessions.c.user_name,
            web_sessions.c.identity,
            web_sessions.c.created_at,
            web_sessions.c.last_seen_at,
            web_sessions.c.expires_at,
            (web_sessions.c.oidc.is_not(None)).label("signed_in_at_provider"),
        )
        .where(web_sessions.c.expires_at > now)
        .order_by(web_sessions.c.last_seen_at.desc())
        .limit(limit)
    )
    return list(conn.execute(query).mappings())


def delete_ended_sessions(conn: Connection, now: datetime) -> int:
    return conn.execute(web_sessions.delete().where(web_sessions.c.expires_at <= now)).rowcount


def identity_json(identity: Identity) -> dict[str, Any]:
    return {
        "name": identity.name,
        "groups": sorted(identity.groups),
        "admin": identity.admin,
        "kind": identity.kind.value,
        "source": identity.source,
        "display_name": identity.display_name,
        "auth_time": identity.auth_time.isoformat() if identity.auth_time else None,
        "acr": identity.acr,
        "amr": list(identity.amr),
        "workload": _workload_json(identity.workload),
    }


def _workload_json(proof: WorkloadProof | None) -> dict[str, Any] | None:
    if proof is None:
        return None
    return {"rule": proof.rule, "issuer": proof.issuer, "sub": proof.subject, "jti": proof.token_id}


def _workload_proof(data: object) -> WorkloadProof | None:
    if not isinstance(data, dict):
        return None
    return WorkloadProof(str(data["rule"]), str(data["issuer"]), str(data["sub"]), data.get("jti"))


def identity_from_json(data: dict[str, Any], expires_at: datetime | None) -> Identity:
    return Identity(
        name=data["name"],
        groups=frozenset(data["groups"]),
        admin=bool(data["admin"]),
        kind=IdentityKind(data["kind"]),
        source=data["source"],
        display_name=data.get("display_name"),
        expires_at=expires_at,
        auth_time=datetime.fromisoformat(data["auth_time"]) if data.get("auth_time") else None,
        acr=data.get("acr"),
        amr=tuple(data.get("amr") or ()),
        workload=_workload_proof(data.get("workload")),
    )


def latest_display_name(conn: Connection, user: str) -> str | None:
    """The display name ``user`` last signed in to the console with, if any (for people to read)."""
    query = (
        sa.select(web_sessions.c.identity)
        .where(web_sessions.c.user_name == user)
        .order_by(web_sessions.c.created_at.desc())
        .limit(5)
    )
    for (identity,) in conn.execute(query):
        name = shown_display_name(identity)
        if name is not None:
            return name
    return None


def shown_display_name(identity: object) -> str | None:
    """The display name a stored session's identity carries, escaped where it could disguise itself
    (a session opened before the sign-in checked it), or None."""
    name = identity.get("display_name") if isinstance(identity, dict) else None
    return printable(name) if isinstance(name, str) and name else None
