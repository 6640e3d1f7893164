"""Local API tokens: 256 random bits shown once, stored only as a SHA-256 hash.

A plain hash (not a slow password hash) is right here: the token is random and long, so there is
nothing to guess, and lookups stay a single indexed query.

A token found valid is believed for ``CACHE_SECONDS`` without asking the database again (keyed by
its hash, never by the token itself). That bounds how long a token revoked, or a user disabled,
keeps working in each broker process: at most ``CACHE_SECONDS`` after the change is committed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable

from jitgate.domain.identity import Identity
from jitgate.errors import Unauthenticated
from jitgate.store import queries as q
from jitgate.store.db import Database

PREFIX = "jg_"
_FORM = re.compile(r"^jg_[A-Za-z0-9_-]{43}$")
CACHE_SECONDS = 5.0
"""The longest a revoked token or a disabled user is still let in by a process that saw it valid."""
_CACHE_MAX = 10_000


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenAuthenticator:
    def __init__(
        self,
        db: Database,
        *,
        cache_seconds: float = CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, Identity]] = {}
        self._lock = threading.Lock()

    def recognises(self, bearer: str) -> bool:
        return bearer.startswith(PREFIX)

    def cached(self, bearer: str) -> Identity | None:
        """The identity of a token verified less than ``cache_seconds`` ago; never touches the database."""
        if not _FORM.match(bearer):
            return None
        hit = self._cache.get(token_hash(bearer))
        if hit is None or hit[0] <= self._monotonic():
            return None
        return hit[1]

    def authenticate(self, bearer: str) -> Identity:
        if not _FORM.match(bearer):
            raise Unauthenticated("malformed API token")
        digest = token_hash(bearer)
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > self._monotonic():
            return hit[1]
        with self._db.read() as conn:
            identity = q.identity_for_token_hash(conn, digest)
        # The lookup is by hash, so timing reveals nothing about the token; compare once more anyway.
        if identity is None or not hmac.compare_digest(digest, token_hash(bearer)):
            with self._lock:
                self._cache.pop(digest, None)
            raise Unauthenticated("unknown or revoked API token")
        if self._cache_seconds > 0:
            with self._lock:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()  # many distinct tokens: start over rather than grow
                self._cache[digest] = (self._monotonic() + self._cache_seconds, identity)
        return identity
