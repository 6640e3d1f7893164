"""Local API tokens: 256 random bits shown once, stored only as a SHA-256 hash.

A plain hash (not a slow password hash) is right here: the token is random and long, so there is
nothing to guess, and lookups stay a single indexed query.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from jitgate.domain.identity import Identity
from jitgate.errors import Unauthenticated
from jitgate.store import queries as q
from jitgate.store.db import Database

PREFIX = "jg_"
_FORM = re.compile(r"^jg_[A-Za-z0-9_-]{43}$")


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenAuthenticator:
    def __init__(self, db: Database) -> None:
        self._db = db

    def recognises(self, bearer: str) -> bool:
        return bearer.startswith(PREFIX)

    def authenticate(self, bearer: str) -> Identity:
        if not _FORM.match(bearer):
            raise Unauthenticated("malformed API token")
        digest = token_hash(bearer)
        with self._db.read() as conn:
            identity = q.identity_for_token_hash(conn, digest)
        # The lookup is by hash, so timing reveals nothing about the token; compare once more anyway.
        if identity is None or not hmac.compare_digest(digest, token_hash(bearer)):
            raise Unauthenticated("unknown or revoked API token")
        return identity
