"""The authentication seam: each authenticator turns a bearer credential into an identity or passes.

Authenticators are tried in order; the first that recognises the credential decides. One that
recognises it and finds it invalid raises ``Unauthenticated`` (a forged OIDC token never falls
through to the next authenticator). A JWT is recognised by its (unverified) issuer: the people's
OIDC issuer's authenticator takes its own, the workloads' takes those of the issuers the policy
trusts, and a JWT from any other issuer is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jitgate.auth.jwks import looks_like_jwt
from jitgate.domain.identity import Identity
from jitgate.errors import Unauthenticated


class Authenticator(Protocol):
    def recognises(self, bearer: str) -> bool: ...

    def authenticate(self, bearer: str) -> Identity:
        """Return the identity, or raise ``Unauthenticated`` with a one-line reason."""
        ...


def authenticate(authenticators: Sequence[Authenticator], authorization: str | None) -> Identity:
    if not authorization:
        raise Unauthenticated("missing bearer token (set JITGATE_TOKEN or run jitgate login)")
    scheme, _, bearer = authorization.partition(" ")
    if scheme.lower() != "bearer" or not bearer.strip():
        raise Unauthenticated("authorization must be 'Bearer TOKEN'")
    bearer = bearer.strip()
    for authenticator in authenticators:
        if authenticator.recognises(bearer):
            return authenticator.authenticate(bearer)
    if looks_like_jwt(bearer):
        # Not echoed: the issuer a stranger's token names is the stranger's text.
        raise Unauthenticated("token refused: its issuer is not one this broker trusts")
    raise Unauthenticated("unrecognised bearer token")
