"""The credential-provider interface every kind of target implements.

A provider turns an active grant into a credential for one target and takes it back. The broker
records a credential *before* it exists at the target (``new_handle`` names it), so that a crash
between the two never leaves a login nobody will remove: revocation is idempotent and treats a
credential that is already gone as revoked.

Third parties register a factory under the ``jitgate.providers`` entry-point group, keyed by the
target ``kind`` it serves; see ``docs/providers.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from jitgate.clock import Clock
from jitgate.domain.identity import Identity
from jitgate.domain.model import Grant
from jitgate.policy.model import Role, Target


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What a provider factory is given: where the broker keeps its files, the environment, a clock."""

    data_dir: Path
    environ: Mapping[str, str]
    clock: Clock
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IssueRequest:
    """One credential to mint: for ``identity`` under ``grant`` on ``target`` as ``role`` allows."""

    grant: Grant
    role: Role
    target: Target
    identity: Identity
    now: datetime
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Issued:
    """A minted credential.

    ``record`` is what the audit log and the credentials table keep (serial, fingerprint, login
    name, validity); ``secret`` is handed to the caller once and never stored or logged.
    """

    handle: str
    valid_after: datetime
    valid_before: datetime
    record: Mapping[str, Any]
    secret: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str


@runtime_checkable
class CredentialProvider(Protocol):
    """Issue under a grant, revoke, check health. Implementations must be thread-safe."""

    kind: str
    revocable: bool
    """True when ending a grant needs work at the target (a login to drop); False when the
    credential dies by itself or is revoked inside the broker (SSH certificates via the KRL)."""

    def new_handle(self, request: IssueRequest) -> str:
        """Name the credential before it exists (a login name, a certificate serial)."""
        ...

    def issue(self, request: IssueRequest, handle: str) -> Issued:
        """Create the credential at the target. Raise ``ProviderError`` (no secret in it) on failure."""
        ...

    def revoke(self, target: Target, handle: str) -> Mapping[str, Any] | None:
        """Make the credential useless at the target. Idempotent: already gone counts as done.

        May return what became of things the credential left behind (objects a database login
        created, say); the broker adds it to the ``credential.revoked`` audit event. No secret in it.
        """
        ...

    def check(self, target: Target) -> Health: ...
