"""Workloads signing in with the tokens their platform issues (CI job tokens, Kubernetes
service-account tokens), held to the policy's workload rules; no secret of jitgate's is involved.

A JWT whose ``iss`` is an issuer some rule names comes here (``base.py`` routes by issuer). It is
checked like a person's OIDC token (``jwks.py``: the issuer's keys, the key's algorithm, ``iss``
exact, ``aud``, ``exp``, ``iat``, ``nbf``), and it may not be valid for longer than
``MAX_TOKEN_LIFETIME`` from ``iat`` to ``exp``: platform tokens live minutes to hours, and a token
that lives for months is a stored secret again. Then the rules of its issuer are matched against
its claims (``matching_rules``). It must match exactly one: when two rules match, which one wins
would depend on their order in the file, so that adding a broad rule above a narrow one would
silently change what a job is; the token is refused instead, naming both. A token that matches
none is refused naming its issuer only: its claims are the job's, and may say more than they should.

The identity is ``workload:RULE`` (policy subject ``user:workload:RULE``), kind SERVICE, with the
rule's groups, never an admin, and no sign-in time (so a role that ``requires`` a fresh sign-in
is out of its reach). Rules are read from the policy in force at every call: a reload takes effect
at once. The token's ``sub`` and ``jti`` travel with the identity into the audit record.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from jitgate.auth.jwks import (
    KEYS_LIFESPAN_SECONDS,
    RETRY_SECONDS,
    IssuerKeys,
    unverified_issuer,
    verified_claims,
)
from jitgate.domain.identity import Identity, IdentityKind, WorkloadProof
from jitgate.domain.text import printable
from jitgate.errors import Unauthenticated
from jitgate.policy.workloads import WORKLOAD_NAMESPACE, WorkloadRule

MAX_TOKEN_LIFETIME = timedelta(hours=24)
LEEWAY_SECONDS = 30
_TOKEN_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def claim_matches(expected: str | tuple[str, ...], actual: object) -> bool:
    """Whether a token's claim satisfies a rule's: equal to the value (or one of several), or
    matching it as a shell pattern when it holds ``*``. A claim that is missing or not a string
    (a number, a list, an object) never matches."""
    if not isinstance(actual, str):
        return False
    wanted = expected if isinstance(expected, tuple) else (expected,)
    return any(fnmatch.fnmatchcase(actual, value) if "*" in value else actual == value for value in wanted)


def rule_matches(rule: WorkloadRule, claims: Mapping[str, Any]) -> bool:
    """Verified ``claims`` are of the rule's issuer, for its audience, with every claim it names."""
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    return (
        claims.get("iss") == rule.issuer
        and rule.audience in audiences
        and all(claim_matches(expected, claims.get(name)) for name, expected in rule.claims.items())
    )


def matching_rules(rules: Sequence[WorkloadRule], claims: Mapping[str, Any]) -> list[WorkloadRule]:
    return [rule for rule in rules if rule_matches(rule, claims)]


def start_problem(rules: Sequence[WorkloadRule], people_issuer: str | None, namespace: str) -> str | None:
    """Why workload rules cannot work beside the people's OIDC issuer and namespace, or None."""
    if namespace == WORKLOAD_NAMESPACE:
        return f"JITGATE_OIDC_NAMESPACE cannot be {namespace!r}: that is the namespace of workload identities"
    for rule in rules:
        if people_issuer is not None and rule.issuer == people_issuer:
            return (
                f"workload {rule.name!r} trusts {rule.issuer}, which is JITGATE_OIDC_ISSUER: a token from it "
                "could be a person's or a workload's; give workloads an issuer of their own"
            )
    return None


class WorkloadAuthenticator:
    """Bearer JWTs from the policy's workload issuers, each turned into the workload its rule names."""

    def __init__(
        self,
        rules: Callable[[], Sequence[WorkloadRule]],
        *,
        leeway_seconds: int = LEEWAY_SECONDS,
        max_lifetime: timedelta = MAX_TOKEN_LIFETIME,
        keys_lifespan_seconds: float = KEYS_LIFESPAN_SECONDS,
        keys_retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self._rules = rules
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime
        self._keys_lifespan = keys_lifespan_seconds
        self._keys_retry = keys_retry_seconds
        self._keys: dict[tuple[str, str | None], IssuerKeys] = {}
        self._lock = threading.Lock()

    def recognises(self, bearer: str) -> bool:
        issuer = unverified_issuer(bearer)
        return issuer is not None and any(rule.issuer == issuer for rule in self._rules())

    def authenticate(self, bearer: str) -> Identity:
        issuer = unverified_issuer(bearer)
        rules = [rule for rule in self._rules() if rule.issuer == issuer]
        if issuer is None or not rules:
            raise Unauthenticated("token refused: its issuer is not one this broker trusts")
        claims = verified_claims(
            bearer,
            self._keys_of(issuer, rules[0].jwks_url),
            audiences=sorted({rule.audience for rule in rules}),
            leeway_seconds=self._leeway,
            label="workload",
        )
        lifetime = float(claims["exp"]) - float(claims["iat"])
        if lifetime > self._max_lifetime.total_seconds():
            hours = self._max_lifetime.total_seconds() / 3600
            raise Unauthenticated(
                f"workload token refused: it is valid for longer than {hours:g}h from iat to exp"
            )
        matched = matching_rules(rules, claims)
        if not matched:
            raise Unauthenticated(f"workload token from {issuer} matches no workload rule")
        if len(matched) > 1:
            names = ", ".join(rule.name for rule in matched)
            raise Unauthenticated(
                f"workload token from {issuer} matches several workload rules ({names}); "
                "a token must match exactly one"
            )
        rule = matched[0]
        token_id = claims.get("jti")
        return Identity(
            name=rule.identity_name,
            groups=frozenset(rule.groups),
            admin=False,
            kind=IdentityKind.SERVICE,
            source="workload",
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            workload=WorkloadProof(
                rule=rule.name,
                issuer=issuer,
                subject=printable(str(claims["sub"]))[:255],
                token_id=token_id if isinstance(token_id, str) and _TOKEN_ID.match(token_id) else None,
            ),
        )

    def _keys_of(self, issuer: str, jwks_url: str | None) -> IssuerKeys:
        """The issuer's keys, cached across calls; a source no rule names any more is forgotten."""
        with self._lock:
            found = self._keys.get((issuer, jwks_url))
            if found is None:
                current = {(rule.issuer, rule.jwks_url) for rule in self._rules()}
                self._keys = {source: keys for source, keys in self._keys.items() if source in current}
                found = IssuerKeys(
                    issuer,
                    jwks_url,
                    unavailable=f"cannot fetch the keys of workload issuer {issuer} to check this token",
                    lifespan_seconds=self._keys_lifespan,
                    retry_seconds=self._keys_retry,
                )
                self._keys[(issuer, jwks_url)] = found
            return found
