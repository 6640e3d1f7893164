"""Who is acting: a user or service account with groups, however it proved itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class IdentityKind(StrEnum):
    USER = "user"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller. ``source`` says how it was proven (``token``, ``oidc``, ``local``)."""

    name: str
    groups: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False
    kind: IdentityKind = IdentityKind.USER
    source: str = "token"

    @property
    def principals(self) -> frozenset[str]:
        """Policy subjects this identity matches: ``user:NAME`` and one ``group:G`` per group."""
        return frozenset({f"user:{self.name}", *(f"group:{g}" for g in self.groups)})

    def matches(self, subjects: tuple[str, ...] | list[str]) -> bool:
        return not self.principals.isdisjoint(subjects)


SYSTEM = Identity(name="jitgate", kind=IdentityKind.SERVICE, source="system")
"""The broker itself, as the actor of scheduled steps (expiry, time-outs, retries)."""
