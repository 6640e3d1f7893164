"""Machine identities: which platform-issued OIDC tokens (CI job tokens, Kubernetes service-account
tokens) the broker trusts, and the claim rules that turn one into a workload identity.

A rule names one trusted issuer and the audience its tokens must carry, and lists claims that must
all match (``repository: acme/orders``, ``ref: [refs/heads/main]``; a value with ``*`` is a
shell-style pattern). A token matching a rule is the identity ``workload:NAME`` (policy subject
``user:workload:NAME``) with the rule's groups; policy then decides what it may request, who must
approve, and for how long, exactly as for a person. No secret is stored anywhere.

The issuer and its keys' address must be ``https`` (``http`` only on loopback): keys fetched in
the clear could be swapped for keys that sign anything. One issuer has one key source: rules
naming the same issuer cannot name different ``jwks_url``s.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jitgate.domain.oauth import secure_transport

WORKLOAD_NAMESPACE = "workload"
_CLAIM = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
_VALUE = re.compile(r"^[^\x00-\x1f\x7f]{1,512}$")

ClaimValue = Annotated[str, Field(pattern=_VALUE.pattern)]


class WorkloadRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")
    description: str = ""
    issuer: str = Field(min_length=8)
    audience: str = Field(min_length=1)
    jwks_url: str | None = None
    claims: dict[str, ClaimValue | tuple[ClaimValue, ...]] = Field(min_length=1)
    groups: tuple[str, ...] = ()

    @field_validator("issuer", "jwks_url")
    @classmethod
    def _secure(cls, value: str | None) -> str | None:
        if value is not None and not secure_transport(value):
            raise ValueError(f"{value!r} must be an https URL (http only on loopback)")
        return value

    @field_validator("claims")
    @classmethod
    def _claims(cls, value: dict[str, str | tuple[str, ...]]) -> dict[str, str | tuple[str, ...]]:
        for claim, expected in value.items():
            if not _CLAIM.match(claim):
                raise ValueError(f"{claim!r} is not a claim name")
            if claim in {"iss", "aud", "exp", "nbf", "iat"}:
                raise ValueError(f"claim {claim!r} is checked by the broker itself; match other claims")
            if isinstance(expected, tuple) and not expected:
                raise ValueError(f"claim {claim!r} needs at least one value")
            values = expected if isinstance(expected, tuple) else (expected,)
            if any(not value.strip("*") for value in values):
                # Anyone can get a token from a CI platform's issuer: "*" would admit them all.
                raise ValueError(f"claim {claim!r}: only '*' matches every token; say what it must be")
        return value

    @property
    def identity_name(self) -> str:
        return f"{WORKLOAD_NAMESPACE}:{self.name}"


def rules_problem(rules: Sequence[WorkloadRule]) -> str | None:
    """Why ``rules`` cannot stand together (a name twice, one issuer with two key sources), or None."""
    names: set[str] = set()
    keys: dict[str, str | None] = {}
    for rule in rules:
        if rule.name in names:
            return f"workload {rule.name!r} is defined twice"
        names.add(rule.name)
        if rule.issuer in keys and keys[rule.issuer] != rule.jwks_url:
            return f"workloads of issuer {rule.issuer} name different jwks_url; give each the same"
        keys[rule.issuer] = rule.jwks_url
    return None
