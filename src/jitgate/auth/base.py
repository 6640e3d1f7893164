"""The authentication seam: each authenticator turns a bearer credential into an identity or passes.

Authenticators are tried in order; the first that recognises the credential's form decides. One
that recognises it and finds it invalid raises ``Unauthenticated`` (a forged OIDC token never falls
through to the next authenticator).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

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
    raise Unauthenticated("unrecognised bearer token")
