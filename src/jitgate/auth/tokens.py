"""Local API tokens: 256 random bits shown once, stored only as a SHA-256 hash, with an end.

A plain hash (not a slow password hash) is right here: the token is random and long, so there is
nothing to guess, and lookups stay a single indexed query.

A token is refused once it is past ``expires_at``, revoked, or its user is disabled. A token found
valid is believed for ``CACHE_SECONDS`` without asking the database again (keyed by its hash,
never by the token itself), and never past its own expiry. That bounds how long a token revoked,
or a user disabled, keeps working: not at all in the process that made the change (it calls
``forget``), and at most ``CACHE_SECONDS`` after the commit in every other process.

The last use is recorded coarsely: at most once per ``TOUCH_EVERY`` per token and process, and
only when the database is asked anyway, so a busy token costs no write per request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from jitgate.clock import Clock, SystemClock
from jitgate.domain.identity import Identity
from jitgate.errors import StorageUnavailable, Unauthenticated
from jitgate.store import accounts
from jitgate.store.db import Database

PREFIX = "jg_"
_FORM = re.compile(r"^jg_[A-Za-z0-9_-]{43}$")
CACHE_SECONDS = 5.0
"""The longest a revoked token or a disabled user is still let in by another process that saw it valid."""
TOUCH_EVERY = timedelta(minutes=10)
_CACHE_MAX = 10_000
log = logging.getLogger("jitgate.auth")


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def new_token_id() -> str:
    return "t-" + secrets.token_hex(8)


def token_hash(token: str) -> str:
    """What the database keeps of a secret a caller holds (an API token, a web session id): its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Hit:
    until: float
    identity: Identity
    token_id: str


class TokenAuthenticator:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock | None = None,
        cache_seconds: float = CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._clock = clock or SystemClock()
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._cache: dict[str, _Hit] = {}
        self._touched: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def recognises(self, bearer: str) -> bool:
        return bearer.startswith(PREFIX)

    def _fresh(self, hit: _Hit | None) -> Identity | None:
        if hit is None or hit.until <= self._monotonic():
            return None
        expires_at = hit.identity.expires_at
        if expires_at is not None and expires_at <= self._clock.now():
            return None
        return hit.identity

    def cached(self, bearer: str) -> Identity | None:
        """The identity of a token verified less than ``cache_seconds`` ago; never touches the database."""
        if not _FORM.match(bearer):
            return None
        return self._fresh(self._cache.get(token_hash(bearer)))

    def forget(self, *, token_id: str | None = None, user: str | None = None) -> None:
        """Drop cached tokens (one, or all of a user's) after a revocation or a change to their user."""
        with self._lock:
            for digest, hit in list(self._cache.items()):
                if hit.token_id == token_id or hit.identity.name == user:
                    self._cache.pop(digest, None)

    def authenticate(self, bearer: str) -> Identity:
        return self.verify(bearer)[0]

    def verify(self, bearer: str) -> tuple[Identity, str]:
        """The identity and the id of the token; ``Unauthenticated`` if it is not usable now."""
        if not _FORM.match(bearer):
            raise Unauthenticated("malformed API token")
        digest = token_hash(bearer)
        hit = self._cache.get(digest)
        found = self._fresh(hit)
        if found is not None and hit is not None:
            return found, hit.token_id
        with self._db.read() as conn:
            match = accounts.token_by_hash(conn, digest)
        now = self._clock.now()
        # The lookup is by hash, so timing reveals nothing about the token; compare once more anyway.
        problem = None
        if match is None or not hmac.compare_digest(digest, token_hash(bearer)):
            problem = "unknown API token"
        elif match[0].revoked_at is not None:
            problem = "API token revoked"
        elif now >= match[0].expires_at:
            problem = "API token expired; ask for a new one (jitgate tokens rotate)"
        elif match[1].disabled:
            problem = "user disabled"
        if problem is not None or match is None:
            with self._lock:
                self._cache.pop(digest, None)
            raise Unauthenticated(problem or "unknown API token")
        token, owner = match
        identity = owner.identity("token", expires_at=token.expires_at)
        if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
            self._touch(token.id, now)
        if self._cache_seconds > 0:
            with self._lock:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()  # many distinct tokens: start over rather than grow
                self._cache[digest] = _Hit(self._monotonic() + self._cache_seconds, identity, token.id)
        return identity, token.id

    def _touch(self, token_id: str, now: datetime) -> None:
        with self._lock:
            # Many requests with one token arriving together: one of them writes.
            last = self._touched.get(token_id)
            if last is not None and now - last < TOUCH_EVERY:
                return
            if len(self._touched) >= _CACHE_MAX:
                self._touched.clear()
            self._touched[token_id] = now
        try:
            with self._db.write() as conn:
                accounts.touch_token(conn, token_id, now)
        except StorageUnavailable:
            # Only the coarse last-use time is lost; the caller was authenticated all the same.
            log.warning("could not record the last use of API token %s", token_id)
