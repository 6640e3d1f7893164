"""Request bodies of the API. Unknown fields are refused; strings have sane upper bounds."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from jitgate.domain.text import MAX_TEXT_LENGTH


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestCreate(Body):
    role: str = Field(min_length=1, max_length=64)
    reason: str = Field(default="", max_length=MAX_TEXT_LENGTH)
    duration: str | None = Field(default=None, max_length=32, examples=["1h"])
    targets: list[str] = Field(default_factory=list, max_length=100)
    start_at: datetime | None = None
    requester: str | None = Field(default=None, max_length=128)


class ReviewCreate(Body):
    verdict: Literal["approve", "deny"]
    comment: str = Field(default="", max_length=MAX_TEXT_LENGTH)


class RevokeBody(Body):
    comment: str = Field(default="", max_length=MAX_TEXT_LENGTH)


class ExtendBody(Body):
    duration: str = Field(min_length=1, max_length=32)
    reason: str = Field(default="", max_length=MAX_TEXT_LENGTH)


class SshCertificateCreate(Body):
    target: str = Field(min_length=1, max_length=64)
    public_key: str = Field(min_length=1, max_length=16384)
    login: str | None = Field(
        default=None, max_length=32, description="Certify only this one of the role's logins"
    )


class HostCertificateCreate(Body):
    public_key: str = Field(min_length=1, max_length=16384)
    principals: list[str] = Field(min_length=1, max_length=32)
    validity: str = Field(default="52w", max_length=32)


class DbCredentialCreate(Body):
    target: str = Field(min_length=1, max_length=64)
