"""Who is acting: a user or service account with groups, however it proved itself.

Names are the keys of authorization (grant holder, requester, reviewer, ``user:NAME`` in policy),
so they come from one namespace that nobody can step into by choosing a display name:

- local users have plain names (``alice``), never containing ``:``;
- OIDC identities are named ``NAMESPACE:SUBJECT`` after the issuer's stable subject claim, one
  namespace per trusted issuer (``oidc:…`` by default), so they can never equal a local name;
- the broker's own actors (``RESERVED_NAMES``) are refused as user names.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

LOCAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")
"""A local user, service account or group name: no ``:``, which namespaced names always hold."""
NAMESPACE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
_SUBJECT = re.compile(r"^[A-Za-z0-9_.@+-]{1,100}$")

RESERVED_NAMES = frozenset({"jitgate", "system", "local-admin", "anonymous"})
"""Names the broker writes as actors in the audit log itself; no user may be called one of them."""


class IdentityKind(StrEnum):
    USER = "user"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class WorkloadProof:
    """What a workload's platform token said about it, for the audit record (never the token):
    the policy rule it matched, its issuer, its ``sub`` and its ``jti`` if it had one."""

    rule: str
    issuer: str
    subject: str
    token_id: str | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller. ``source`` says how it was proven (``token``, ``oidc``, ``local``).

    ``display_name`` is for people to read (an OIDC ``preferred_username``); it never decides
    anything. ``expires_at`` is when the credential that proved the identity ends, if known.
    ``auth_time``, ``acr`` and ``amr`` say when and how strongly the person last signed in at
    their identity provider (the OIDC claims of those names), for roles that demand a fresh or
    strong sign-in; they are None and empty for API tokens, which prove no recent sign-in.
    ``workload`` is set for a workload (kind SERVICE) that signed in with its platform's token.
    """

    name: str
    groups: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False
    kind: IdentityKind = IdentityKind.USER
    source: str = "token"
    display_name: str | None = None
    expires_at: datetime | None = None
    auth_time: datetime | None = None
    acr: str | None = None
    amr: tuple[str, ...] = ()
    workload: WorkloadProof | None = None

    @property
    def principals(self) -> frozenset[str]:
        """Policy subjects this identity matches: ``user:NAME`` and one ``group:G`` per group."""
        return frozenset({f"user:{self.name}", *(f"group:{g}" for g in self.groups)})

    def matches(self, subjects: tuple[str, ...] | list[str]) -> bool:
        return not self.principals.isdisjoint(subjects)


def namespaced_name(namespace: str, subject: str) -> str:
    """The stable name of an external identity: ``NAMESPACE:SUBJECT``.

    A subject outside the plain character set (or too long) is named by its SHA-256 instead,
    ``NAMESPACE:sha256-<32 hex>``, so that every subject still gets exactly one name.
    """
    if not NAMESPACE.match(namespace):
        raise ValueError(f"{namespace!r} is not a valid identity namespace")
    if _SUBJECT.match(subject):
        return f"{namespace}:{subject}"
    return f"{namespace}:sha256-{hashlib.sha256(subject.encode()).hexdigest()[:32]}"


def local_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a local user's name, or None if it can."""
    if not LOCAL_NAME.fullmatch(name):
        return f"{name!r} is not a valid user name"
    if name.lower() in RESERVED_NAMES:
        return f"{name!r} is reserved for the broker itself"
    return None


SYSTEM = Identity(name="jitgate", kind=IdentityKind.SERVICE, source="system")
"""The broker itself, as the actor of scheduled steps (expiry, time-outs, retries)."""
