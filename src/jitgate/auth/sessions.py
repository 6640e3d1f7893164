"""Web sessions: what signing in to the web pages gives, kept by the broker, not by the browser.

The cookie holds only a random session id (256 bits); the database holds its SHA-256, who signed
in, with which API token, and when it ends: after ``idle`` without a page view, after ``maximum``
in any case, and never later than the credential it was opened with. Every page view checks the
row, so signing out, revoking the token, or disabling the user ends the session in every broker
process at once. The id is never a bearer credential: the API does not know it.

A session opened by signing in at the OpenID provider (``auth/oidc_flow.py``) also keeps, in
``oidc``, the ID token (the hint for signing out there) and the refresh token if the provider gave
one. At most every ``recheck`` the provider is asked again with it: a refusal, or a provider that
cannot be reached, ends the session (fail closed); an answer brings the groups up to date. Without
a refresh token the session lasts what the idle and maximum limits allow.

The session also carries at most one message for the next page (``flash``). The pages show only
those, which the broker wrote, and never text taken from the URL.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.engine import RowMapping

from jitgate.auth.base import Authenticator, authenticate
from jitgate.auth.tokens import TokenAuthenticator, token_hash
from jitgate.clock import Clock
from jitgate.domain.identity import Identity
from jitgate.errors import IdentityProviderUnavailable, Unauthenticated
from jitgate.store import accounts
from jitgate.store.db import Database

PREFIX = "jgs_"
_FORM = re.compile(r"^jgs_[A-Za-z0-9_-]{43}$")
TOUCH_EVERY = timedelta(minutes=1)
"""How stale ``last_seen_at`` may get: the idle limit is kept to within this much."""
RECHECK_CLAIM = timedelta(minutes=1)
"""How long one page view holds a due re-check for itself, so that others do not repeat it."""


@dataclass(frozen=True, slots=True)
class WebSession:
    id_hash: str
    identity: Identity
    flash: dict[str, str] | None
    oidc: dict[str, Any] | None = None


class Rechecker(Protocol):
    def recheck(self, identity: Identity, state: dict[str, Any]) -> tuple[Identity, dict[str, Any]]:
        """The identity as the provider sees it now and the new state; ``Unauthenticated`` if gone."""
        ...


def sign_in_identity(authenticators: Sequence[Authenticator], bearer: str) -> tuple[Identity, str | None]:
    """The identity a pasted credential proves and, for an API token, the token's id."""
    for authenticator in authenticators:
        if isinstance(authenticator, TokenAuthenticator) and authenticator.recognises(bearer):
            return authenticator.verify(bearer)
    return authenticate(authenticators, f"Bearer {bearer}"), None


class WebSessions:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        idle: timedelta,
        maximum: timedelta,
        rechecker: Rechecker | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._idle = idle
        self._maximum = maximum
        self._rechecker = rechecker

    def open(
        self,
        identity: Identity,
        token_id: str | None,
        oidc: dict[str, Any] | None = None,
        flash: dict[str, str] | None = None,
    ) -> str:
        """Create a session and return its id for the cookie (never stored); ``flash`` is a
        message for its first page."""
        session_id = PREFIX + secrets.token_urlsafe(32)
        now = self._clock.now()
        ends = now + self._maximum
        if identity.expires_at is not None:
            ends = min(ends, identity.expires_at)
        with self._db.write() as conn:
            accounts.delete_ended_sessions(conn, now)
            accounts.insert_session(
                conn,
                id_hash=token_hash(session_id),
                identity=identity,
                token_id=token_id,
                now=now,
                expires_at=ends,
                oidc=oidc,
                flash=flash,
            )
        return session_id

    def resolve(self, session_id: str | None) -> WebSession | None:
        """The live session with this id, or None (unknown, ended, idle too long, or no longer allowed)."""
        if not session_id or not _FORM.match(session_id):
            return None
        digest = token_hash(session_id)
        now = self._clock.now()
        with self._db.read() as conn:
            row = accounts.get_session(conn, digest)
        if row is None:
            return None
        identity = self._identity_if_live(row, now)
        if identity is None:
            with self._db.write() as conn:
                accounts.delete_session(conn, digest)
            return None
        oidc = row["oidc"]
        if oidc is not None and _due(oidc, now):
            rechecked = self._recheck(digest, identity, now)
            if rechecked is None:
                return None
            identity, oidc = rechecked
        if now - row["last_seen_at"] >= TOUCH_EVERY:
            with self._db.write() as conn:
                accounts.touch_session(conn, digest, now)
        return WebSession(digest, identity, row["flash"], oidc)

    def _recheck(
        self, digest: str, identity: Identity, now: datetime
    ) -> tuple[Identity, dict[str, Any]] | None:
        """Ask the provider about a session whose re-check is due; None if that ended it."""
        with self._db.write() as conn:
            row = accounts.lock_session(conn, digest)
            if row is None:
                return None
            state = dict(row["oidc"])
            if not _due(state, now):
                return identity, state  # another page view is asking or has asked
            claimed = {**state, "recheck_at": (now + RECHECK_CLAIM).isoformat()}
            accounts.set_session_oidc(conn, digest, claimed)
        try:
            if self._rechecker is None:
                raise Unauthenticated("single sign-on is no longer configured")
            identity, state = self._rechecker.recheck(identity, state)
        except (Unauthenticated, IdentityProviderUnavailable):
            with self._db.write() as conn:
                accounts.delete_session(conn, digest)
            return None
        with self._db.write() as conn:
            accounts.set_session_oidc(conn, digest, state, identity)
        return identity, state

    def _identity_if_live(self, row: RowMapping, now: datetime) -> Identity | None:
        if now >= row["expires_at"] or now >= row["last_seen_at"] + self._idle:
            return None
        if row["token_id"] is not None:
            revoked = row["token_revoked_at"] is not None
            if revoked or row["token_expires_at"] is None or now >= row["token_expires_at"]:
                return None
        signed_in = accounts.identity_from_json(row["identity"], row["expires_at"])
        if row["user_disabled"] is None:
            # Not a local user (an OIDC identity): as proven at sign-in, for at most the token's life.
            return None if row["token_id"] is not None else signed_in
        if row["user_disabled"]:
            return None
        # A local user's groups and admin flag as they are now, not as they were at sign-in.
        return Identity(
            name=signed_in.name,
            groups=frozenset(row["user_groups"]),
            admin=bool(row["user_admin"]),
            kind=signed_in.kind,
            source="web",
            expires_at=row["expires_at"],
        )

    def end(self, session_id: str | None) -> None:
        """End the session with this id, if any; a signed-out cookie means nothing afterwards."""
        if session_id and _FORM.match(session_id):
            with self._db.write() as conn:
                accounts.delete_session(conn, token_hash(session_id))

    def set_flash(self, session: WebSession, kind: str, text: str) -> None:
        with self._db.write() as conn:
            accounts.set_flash(conn, session.id_hash, {"kind": kind, "text": text[:500]})

    def take_flash(self, session: WebSession) -> dict[str, str] | None:
        """The message for this page, shown once."""
        if session.flash is None:
            return None
        with self._db.write() as conn:
            accounts.set_flash(conn, session.id_hash, None)
        return session.flash


def _due(state: dict[str, Any], now: datetime) -> bool:
    """Whether a session signed in at the provider must be checked there again now."""
    if not state.get("refresh_token"):
        return False
    try:
        return now >= datetime.fromisoformat(str(state.get("recheck_at")))
    except ValueError:
        return True
