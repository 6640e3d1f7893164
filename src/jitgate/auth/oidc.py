"""OIDC bearer tokens: JWTs verified against the issuer's JWKS, mapped to an identity with groups.

The signature checks are ``jwks.py``'s: only asymmetric algorithms, the key's and never the
token's. Issuer, audience, expiry and not-before are required. Only JWTs whose ``iss`` is this
issuer are taken up here; a workload's token goes to ``workloads.py``.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jitgate.auth.jwks import IssuerKeys, unverified_issuer, verified_claims
from jitgate.domain.identity import NAMESPACE, Identity, namespaced_name
from jitgate.domain.text import printable
from jitgate.errors import Unauthenticated
from jitgate.policy.workloads import WORKLOAD_NAMESPACE

_DISPLAY = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_CLAIM_WORD = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True, slots=True)
class ClaimMapping:
    """How verified claims become an identity; the same for bearer tokens and console sign-ins."""

    namespace: str = "oidc"
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    admin_groups: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.namespace == WORKLOAD_NAMESPACE:
            # ``workload:NAME`` is what policy rules name; no person's subject may take one.
            raise ValueError(f"{self.namespace!r} is the namespace of workload identities; choose another")

    def identity(
        self, claims: Mapping[str, Any], *, expires_at: datetime | None, leeway_seconds: int = 30
    ) -> Identity:
        """The identity of verified ``claims``, or ``Unauthenticated`` for unusable ones."""
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise Unauthenticated("OIDC token has no usable sub claim")
        display = claims.get(self.username_claim)
        # Shown to approvers beside the name: no bidi override or invisible character may
        # reorder or hide what they read (``domain/text.py``); such a name is simply not used.
        readable = isinstance(display, str) and _DISPLAY.match(display) and printable(display) == display
        display = display if readable else None
        raw_groups = claims.get(self.groups_claim, [])
        if not isinstance(raw_groups, list) or not all(isinstance(g, str) for g in raw_groups):
            raise Unauthenticated(f"OIDC token's {self.groups_claim} claim is not a list of names")
        groups = frozenset(raw_groups)
        issued = claims.get("iat")
        latest = int(issued) + leeway_seconds if isinstance(issued, int | float) else None
        return Identity(
            name=namespaced_name(self.namespace, subject),
            groups=groups,
            admin=bool(groups & self.admin_groups),
            source="oidc",
            display_name=display,
            expires_at=expires_at,
            auth_time=_auth_time(claims.get("auth_time"), latest),
            acr=_acr(claims.get("acr")),
            amr=_amr(claims.get("amr")),
        )


class OidcAuthenticator:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Sequence[str],
        jwks_url: str | None,
        username_claim: str = "preferred_username",
        groups_claim: str = "groups",
        admin_groups: Sequence[str] = (),
        leeway_seconds: int = 30,
        namespace: str = "oidc",
    ) -> None:
        if not NAMESPACE.match(namespace):
            raise ValueError(f"{namespace!r} is not a valid OIDC namespace (a-z, 0-9, -; 16 at most)")
        self.issuer = issuer
        self._audiences = [audience] if isinstance(audience, str) else list(audience)
        if not self._audiences or not all(self._audiences):
            raise ValueError("an OIDC authenticator needs at least one audience")
        self._keys = IssuerKeys(
            issuer, jwks_url, unavailable="cannot fetch the identity provider's keys to check this token"
        )
        self._claims = ClaimMapping(namespace, username_claim, groups_claim, frozenset(admin_groups))
        self._leeway = leeway_seconds

    def recognises(self, bearer: str) -> bool:
        """A JWT naming this issuer; every other JWT goes to the verifier of its own issuer."""
        return unverified_issuer(bearer) == self.issuer

    def authenticate(self, bearer: str) -> Identity:
        claims = verified_claims(
            bearer, self._keys, audiences=self._audiences, leeway_seconds=self._leeway, label="OIDC"
        )
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
        return self._claims.identity(claims, expires_at=expires_at, leeway_seconds=self._leeway)


def _auth_time(value: object, latest: int | None) -> datetime | None:
    """``auth_time`` as UTC; a sign-in after the token was issued (``latest``) is refused."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return None
    if latest is not None and value > latest:
        # A sign-in "after now" would pass any freshness test; only a broken issuer sends one.
        raise Unauthenticated("OIDC token refused: its auth_time is after it was issued")
    return datetime.fromtimestamp(int(value), UTC)


def _acr(value: object) -> str | None:
    return value if isinstance(value, str) and _CLAIM_WORD.match(value) else None


def _amr(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(m, str) and _CLAIM_WORD.match(m) for m in value):
        return ()
    return tuple(value)
