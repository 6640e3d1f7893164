"""Query functions for sign-ins under way at the OpenID provider. They never commit.

A row is what the broker must remember between sending a browser to the provider and its coming
back: the nonce, the PKCE verifier, where to go afterwards, what a step-up asked for, and which
browser started it. It is keyed by the SHA-256 of ``state`` and taken (read and deleted) once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jitgate.store.tables import oidc_sign_ins


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    state_hash: str
    nonce: str
    code_verifier: str
    return_to: str
    max_age_s: int | None
    acr_values: tuple[str, ...]
    browser_hash: str
    created_at: datetime
    expires_at: datetime


def insert_sign_in(conn: Connection, pending: PendingSignIn) -> None:
    conn.execute(
        oidc_sign_ins.insert().values(
            state_hash=pending.state_hash,
            nonce=pending.nonce,
            code_verifier=pending.code_verifier,
            return_to=pending.return_to,
            max_age_s=pending.max_age_s,
            acr_values=list(pending.acr_values) or None,
            browser_hash=pending.browser_hash,
            created_at=pending.created_at,
            expires_at=pending.expires_at,
        )
    )


def take_sign_in(conn: Connection, state_hash: str) -> PendingSignIn | None:
    """The sign-in with this state, deleted in the same transaction: a state completes once."""
    query = sa.select(oidc_sign_ins).where(oidc_sign_ins.c.state_hash == state_hash).with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        return None
    conn.execute(oidc_sign_ins.delete().where(oidc_sign_ins.c.state_hash == state_hash))
    return PendingSignIn(
        state_hash=row["state_hash"],
        nonce=row["nonce"],
        code_verifier=row["code_verifier"],
        return_to=row["return_to"],
        max_age_s=row["max_age_s"],
        acr_values=tuple(row["acr_values"] or ()),
        browser_hash=row["browser_hash"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


def delete_ended_sign_ins(conn: Connection, now: datetime) -> int:
    return conn.execute(oidc_sign_ins.delete().where(oidc_sign_ins.c.expires_at <= now)).rowcount


def delete_sign_ins(conn: Connection, state_hashes: list[str]) -> None:
    if state_hashes:
        conn.execute(oidc_sign_ins.delete().where(oidc_sign_ins.c.state_hash.in_(state_hashes)))


def delete_oldest_sign_ins(conn: Connection, *, keep: int) -> None:
    """Delete the oldest sign-ins so that at most ``keep`` are left."""
    excess = count_sign_ins(conn) - keep
    if excess <= 0:
        return
    oldest = sa.select(oidc_sign_ins.c.state_hash).order_by(oidc_sign_ins.c.expires_at).limit(excess)
    delete_sign_ins(conn, list(conn.execute(oldest).scalars()))


def count_sign_ins(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(oidc_sign_ins)).scalar_one())
