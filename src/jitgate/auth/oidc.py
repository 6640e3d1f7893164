"""OIDC bearer tokens: JWTs verified against the issuer's JWKS, mapped to an identity with groups.

Only asymmetric algorithms are accepted (never ``none`` or a shared-secret HMAC, which would let
anyone holding the JWKS forge tokens). Issuer, audience, expiry and not-before are required.

The identity is named after the issuer's subject (``sub``), which the issuer keeps unique and
stable, in a namespace of its own (``oidc:SUBJECT``): a local user's name never has a ``:``, so an
OIDC caller can never be taken for local ``bob``. ``preferred_username`` (or the configured
claim) is only the display name; it decides nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from jitgate.domain.identity import NAMESPACE, Identity, namespaced_name
from jitgate.errors import Unauthenticated

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA")
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_DISPLAY = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")


@dataclass(frozen=True, slots=True)
class ClaimMapping:
    """How verified claims become an identity; the same for bearer tokens and console sign-ins."""

    namespace: str = "oidc"
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    admin_groups: frozenset[str] = frozenset()

    def identity(self, claims: Mapping[str, Any], *, expires_at: datetime | None) -> Identity:
        """The identity of verified ``claims``, or ``Unauthenticated`` for unusable ones."""
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise Unauthenticated("OIDC token has no usable sub claim")
        display = claims.get(self.username_claim)
        display = display if isinstance(display, str) and _DISPLAY.match(display) else None
        raw_groups = claims.get(self.groups_claim, [])
        if not isinstance(raw_groups, list) or not all(isinstance(g, str) for g in raw_groups):
            raise Unauthenticated(f"OIDC token's {self.groups_claim} claim is not a list of names")
        groups = frozenset(raw_groups)
        auth_time = claims.get("auth_time")
        acr = claims.get("acr")
        amr = claims.get("amr", [])
        return Identity(
            name=namespaced_name(self.namespace, subject),
            groups=groups,
            admin=bool(groups & self.admin_groups),
            source="oidc",
            display_name=display,
            expires_at=expires_at,
            auth_time=_instant(auth_time),
            acr=acr if isinstance(acr, str) and acr.isprintable() and len(acr) <= 200 else None,
            amr=tuple(m for m in amr if isinstance(m, str) and m.isprintable())[:16]
            if isinstance(amr, list)
            else (),
        )


def _instant(value: object) -> datetime | None:
    """A NumericDate claim as an aware datetime; anything else (a bool, a string, out of range) is None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (OverflowError, OSError, ValueError):
        return None


class OidcAuthenticator:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        username_claim: str = "preferred_username",
        groups_claim: str = "groups",
        admin_groups: Sequence[str] = (),
        leeway_seconds: int = 30,
        namespace: str = "oidc",
    ) -> None:
        if not NAMESPACE.match(namespace):
            raise ValueError(f"{namespace!r} is not a valid OIDC namespace (a-z, 0-9, -; 16 at most)")
        self._issuer = issuer
        self._audience = audience
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5)
        self._claims = ClaimMapping(namespace, username_claim, groups_claim, frozenset(admin_groups))
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
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError:
            raise Unauthenticated("cannot fetch the identity provider's keys to check this token") from None
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            raise Unauthenticated(f"OIDC token refused: {_reason(exc)}") from None
        return self._claims.identity(claims, expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC))


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
