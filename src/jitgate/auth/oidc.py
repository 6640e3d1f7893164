"""OIDC bearer tokens: JWTs verified against the issuer's JWKS, mapped to an identity with groups.

Only asymmetric algorithms are accepted (never ``none`` or a shared-secret HMAC, which would let
anyone holding the JWKS forge tokens). Issuer, audience, expiry and not-before are required.
Several audiences may be trusted: the broker's own (access tokens minted for it) and the CLI's
client id (the ID tokens ``jitgate login --oidc`` obtains, as kubectl's OIDC plugin sends them).

``auth_time``, ``acr`` and ``amr`` say how recently and how strongly the person signed in; they go
into the identity for roles that ask for a fresh or strong sign-in. A claim of the wrong type is
dropped (the identity then proves less, never more); an ``auth_time`` in the future is refused.

The identity is named after the issuer's subject (``sub``), which the issuer keeps unique and
stable, in a namespace of its own (``oidc:SUBJECT``): a local user's name never has a ``:``, so an
OIDC caller can never be taken for local ``bob``. ``preferred_username`` (or the configured
claim) is only the display name; it decides nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import jwt

from jitgate.domain.identity import NAMESPACE, Identity, namespaced_name
from jitgate.errors import Unauthenticated

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA")
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_DISPLAY = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_CLAIM_WORD = re.compile(r"^[\x21-\x7e]{1,255}$")


class OidcAuthenticator:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Sequence[str],
        jwks_url: str,
        username_claim: str = "preferred_username",
        groups_claim: str = "groups",
        admin_groups: Sequence[str] = (),
        leeway_seconds: int = 30,
        namespace: str = "oidc",
    ) -> None:
        if not NAMESPACE.match(namespace):
            raise ValueError(f"{namespace!r} is not a valid OIDC namespace (a-z, 0-9, -; 16 at most)")
        self._namespace = namespace
        self._issuer = issuer
        self._audiences = [audience] if isinstance(audience, str) else list(audience)
        if not self._audiences or not all(self._audiences):
            raise ValueError("an OIDC authenticator needs at least one audience")
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5)
        self._username_claim = username_claim
        self._groups_claim = groups_claim
        self._admin_groups = frozenset(admin_groups)
        self._leeway = leeway_seconds

    def recognises(self, bearer: str) -> bool:
        return bool(_JWT.match(bearer))

    def authenticate(self, bearer: str) -> Identity:
        try:
            key = self._jwks.get_signing_key_from_jwt(bearer)
            # The key decides the algorithm, not the token's header: no algorithm confusion.
            if key.algorithm_name not in ALGORITHMS:
                raise Unauthenticated(f"OIDC key uses {key.algorithm_name}, which is not accepted")
            claims = jwt.decode(
                bearer,
                key.key,
                algorithms=[key.algorithm_name],
                audience=self._audiences,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError:
            raise Unauthenticated("cannot fetch the identity provider's keys to check this token") from None
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            raise Unauthenticated(f"OIDC token refused: {_reason(exc)}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise Unauthenticated("OIDC token has no usable sub claim")
        display = claims.get(self._username_claim)
        display = display if isinstance(display, str) and _DISPLAY.match(display) else None
        raw_groups = claims.get(self._groups_claim, [])
        if not isinstance(raw_groups, list) or not all(isinstance(g, str) for g in raw_groups):
            raise Unauthenticated(f"OIDC token's {self._groups_claim} claim is not a list of names")
        groups = frozenset(raw_groups)
        auth_time = _auth_time(claims.get("auth_time"), int(claims["iat"]) + self._leeway)
        return Identity(
            name=namespaced_name(self._namespace, subject),
            groups=groups,
            admin=bool(groups & self._admin_groups),
            source="oidc",
            display_name=display,
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            auth_time=auth_time,
            acr=_acr(claims.get("acr")),
            amr=_amr(claims.get("amr")),
        )


def _auth_time(value: object, latest: int) -> datetime | None:
    """``auth_time`` as UTC; a sign-in after the token was issued (``latest``) is refused."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return None
    if value > latest:
        # A sign-in "after now" would pass any freshness test; only a broken issuer sends one.
        raise Unauthenticated("OIDC token refused: its auth_time is after it was issued")
    return datetime.fromtimestamp(int(value), UTC)


def _acr(value: object) -> str | None:
    return value if isinstance(value, str) and _CLAIM_WORD.match(value) else None


def _amr(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(m, str) and _CLAIM_WORD.match(m) for m in value):
        return ()
    return tuple(value)


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
