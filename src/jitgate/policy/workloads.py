"""Machine identities: which platform-issued OIDC tokens (CI job tokens, Kubernetes service-account
tokens) the broker trusts, and the claim rules that turn one into a workload identity.

A rule names one trusted issuer and the audience its tokens must carry, and lists claims that must
all match (``repository: acme/orders``, ``ref: [refs/heads/main]``; a value with ``*`` is a
shell-style pattern). A token matching a rule is the identity ``workload:NAME`` (policy subject
``user:workload:NAME``) with the rule's groups; policy then decides what it may request, who must
approve, and for how long, exactly as for a person. No secret is stored anywhere.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
        return value

    @property
    def identity_name(self) -> str:
        return f"{WORKLOAD_NAMESPACE}:{self.name}"
