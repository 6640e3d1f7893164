"""Frozen value objects of the access workflow: requests, reviews, grants, credentials."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class RequestState(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    ACTIVE = "ACTIVE"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"
    DENIED = "DENIED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset(
    {
        RequestState.EXPIRED,
        RequestState.REVOKED,
        RequestState.DENIED,
        RequestState.CANCELLED,
        RequestState.TIMED_OUT,
    }
)


class RequestKind(StrEnum):
    ACCESS = "access"
    EXTENSION = "extension"


class Verdict(StrEnum):
    APPROVE = "approve"
    DENY = "deny"


class GrantEnd(StrEnum):
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Review:
    reviewer: str
    verdict: Verdict
    comment: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """What someone asked for. For ``kind=extension`` it asks to lengthen ``extends_grant_id``."""

    id: str
    kind: RequestKind
    requester: str
    role: str
    targets: tuple[str, ...]
    reason: str
    duration: timedelta
    state: RequestState
    created_at: datetime
    review_deadline: datetime
    start_at: datetime | None = None
    extends_grant_id: str | None = None
    break_glass: bool = False
    auto_approved_rule: str | None = None
    decided_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """The time-bound entitlement an approved request became."""

    id: str
    request_id: str
    holder: str
    role: str
    targets: tuple[str, ...]
    starts_at: datetime
    expires_at: datetime
    state: RequestState
    ended_at: datetime | None = None
    end_reason: GrantEnd | None = None
    break_glass: bool = False

    def is_active_at(self, when: datetime) -> bool:
        """The one expression of "this grant is in force now"."""
        return self.state is RequestState.ACTIVE and self.starts_at <= when < self.expires_at

    def time_left(self, when: datetime) -> timedelta:
        return max(self.expires_at - when, timedelta(0))
