"""Bearer JWTs checked against their issuer's published keys: what people's OIDC tokens
(``oidc.py``) and workloads' platform tokens (``workloads.py``) share.

The keys come from a configured JWKS URL, or from the ``jwks_uri`` of the issuer's discovery
document, which must name the issuer itself and an ``https`` (or loopback) address. The key set
is cached for ``KEYS_LIFESPAN_SECONDS`` and then fetched again, so a key the issuer withdraws stops
being accepted within that time (single keys are not cached apart: PyJWT's key cache would keep a
withdrawn key for as long as the process runs). A token naming a key not in the set has the set
fetched again, at most once per PyJWT's cool-down (30 s). When the keys cannot be fetched, tokens
naming the issuer are refused for ``RETRY_SECONDS`` without asking again: anyone can write a JWT
naming a trusted issuer, and each would otherwise cost a fetch and hold a request thread for the
fetch's timeout while the issuer is down.

The algorithm is the key's, never the token header's, and only asymmetric ones are taken:
``none``, or an HMAC keyed with the public JWKS, would let anyone forge tokens. Keys shorter than
PyJWT's minimum (RSA under 2048 bits) are refused.

``unverified_issuer`` reads ``iss`` without checking anything, only to choose the verifier a token
goes to; that verifier then checks everything, the issuer included.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import jwt

from jitgate.auth.oidc_provider import check_issuer_url
from jitgate.errors import Unauthenticated

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA")
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
KEYS_LIFESPAN_SECONDS = 300
RETRY_SECONDS = 10.0


def looks_like_jwt(bearer: str) -> bool:
    return bool(_JWT.match(bearer))


def unverified_issuer(bearer: str) -> str | None:
    """The ``iss`` a JWT claims, unchecked: only for choosing who checks it. None if it has none."""
    if not looks_like_jwt(bearer):
        return None
    try:
        claims = jwt.decode(bearer, options={"verify_signature": False})
    except (jwt.PyJWTError, TypeError, ValueError):
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


class IssuerKeys:
    """One issuer's signing keys: from ``jwks_url``, or the ``jwks_uri`` its discovery names."""

    def __init__(
        self,
        issuer: str,
        jwks_url: str | None,
        *,
        unavailable: str,
        lifespan_seconds: float = KEYS_LIFESPAN_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self._unavailable = unavailable
        self._lifespan = lifespan_seconds
        self._retry = retry_seconds
        self._failed_at: float | None = None
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def _keys(self) -> jwt.PyJWKClient:
        if self._client is None:
            url = self.jwks_url or discovered_jwks_uri(self.issuer)
            self._client = jwt.PyJWKClient(
                url, cache_keys=False, cache_jwk_set=True, lifespan=self._lifespan, timeout=5
            )
        return self._client

    def signing_key(self, bearer: str) -> jwt.PyJWK:
        """The key that signed ``bearer``; ``Unauthenticated`` when the keys cannot be fetched."""
        # One fetch at a time, and those waiting behind a failed one do not each try again.
        with self._lock:
            failed_at = self._failed_at
            if failed_at is not None and time.monotonic() - failed_at < self._retry:
                return self._cached_key(bearer)
            try:
                found = self._keys().get_signing_key_from_jwt(bearer)
            except (jwt.PyJWKClientConnectionError, Unauthenticated) as exc:
                self._failed_at = time.monotonic()
                message = str(exc) if isinstance(exc, Unauthenticated) else self._unavailable
                raise Unauthenticated(message) from None
            self._failed_at = None
            return found

    def _cached_key(self, bearer: str) -> jwt.PyJWK:
        """The key that signed ``bearer`` from the key set still cached, without fetching."""
        cache = self._client.jwk_set_cache if self._client is not None else None
        cached = cache.get() if cache is not None else None
        kid = jwt.get_unverified_header(bearer).get("kid")
        found = next((key for key in cached.keys if key.key_id == kid), None) if cached else None
        if found is None:
            raise Unauthenticated(self._unavailable)
        return found


def verified_claims(
    bearer: str,
    keys: IssuerKeys,
    *,
    audiences: Sequence[str],
    leeway_seconds: int,
    label: str,
) -> dict[str, Any]:
    """The claims of ``bearer`` once signature, issuer, audience, ``exp``, ``iat`` and ``nbf`` hold.

    Anything else is ``Unauthenticated`` with one line starting with ``label`` (``OIDC``).
    """
    try:
        key = keys.signing_key(bearer)
        # The key decides the algorithm, not the token's header: no algorithm confusion.
        if key.algorithm_name not in ALGORITHMS:
            raise Unauthenticated(f"{label} key uses {key.algorithm_name}, which is not accepted")
        claims: dict[str, Any] = jwt.decode(
            bearer,
            key.key,
            algorithms=[key.algorithm_name],
            audience=list(audiences),
            issuer=keys.issuer,
            leeway=leeway_seconds,
            # An RSA key under 2048 bits can be factored by someone with enough to gain from it.
            options={"require": ["exp", "iat", "iss", "aud", "sub"], "enforce_minimum_key_length": True},
        )
    except (jwt.PyJWTError, TypeError, ValueError) as exc:
        raise Unauthenticated(f"{label} token refused: {_reason(exc)}") from None
    return claims


def discovered_jwks_uri(issuer: str) -> str:
    """The ``jwks_uri`` of the issuer's discovery document, which must name the issuer itself."""
    try:
        response = httpx.get(issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=5)
        document = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        document = None
    if not isinstance(document, dict) or document.get("issuer") != issuer:
        raise Unauthenticated("cannot read the identity provider's discovery document to check this token")
    uri = document.get("jwks_uri")
    try:
        # Keys fetched in the clear could be swapped on the way for keys that sign anything.
        if not isinstance(uri, str):
            raise ValueError(uri)
        check_issuer_url(uri)
    except ValueError:
        raise Unauthenticated("the identity provider's discovery document names no https jwks_uri") from None
    return uri


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
