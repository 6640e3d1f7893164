"""OIDC bearer tokens: JWTs verified against the issuer's JWKS, mapped to an identity with groups.

Only asymmetric algorithms are accepted (never ``none`` or a shared-secret HMAC, which would let
anyone holding the JWKS forge tokens). Issuer, audience, expiry and not-before are required.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jwt

from jitgate.domain.identity import Identity
from jitgate.errors import Unauthenticated

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA")
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")


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
    ) -> None:
        self._issuer = issuer
        self._audience = audience
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
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError:
            raise Unauthenticated("cannot fetch the identity provider's keys to check this token") from None
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            raise Unauthenticated(f"OIDC token refused: {_reason(exc)}") from None
        name = claims.get(self._username_claim) or claims.get("sub")
        if not isinstance(name, str) or not _NAME.match(name):
            raise Unauthenticated(f"OIDC token has no usable {self._username_claim} claim")
        raw_groups = claims.get(self._groups_claim, [])
        if not isinstance(raw_groups, list) or not all(isinstance(g, str) for g in raw_groups):
            raise Unauthenticated(f"OIDC token's {self._groups_claim} claim is not a list of names")
        groups = frozenset(raw_groups)
        return Identity(name=name, groups=groups, admin=bool(groups & self._admin_groups), source="oidc")


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
