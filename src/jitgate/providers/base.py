"""The credential-provider interface every kind of target implements.

A provider turns an active grant into a credential for one target and takes it back. The broker
records a credential *before* it exists at the target (``new_handle`` names it), so that a crash
between the two never leaves a login nobody will remove: revocation is idempotent and treats a
credential that is already gone as revoked.

Elevation of an account that already exists (a login given a database role, a directory entry
joining a group) is the other half: a provider that can do it also implements
``ElevationProvider``. The broker, not the provider, keeps count of which grants hold what and what
an account held before any grant (``workflow/elevation.py``), so a provider only ever adds and
removes exactly what it is told to, idempotently.

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


@runtime_checkable
class ElevationProvider(Protocol):
    """Grant to an existing account and take it back. Implementations must be thread-safe.

    ``account`` is what the policy maps the identity to (``existing_login: "{user}"`` gives the
    user's name; ``find_account`` turns it into the name the target knows). ``items`` are what the
    role elevates to (PostgreSQL or MariaDB roles, directory group DNs), as the policy spells them.
    Every method is idempotent and raises ``ProviderError`` (``TargetUnreachable`` when the target
    cannot be reached at all, ``ElevationRefused`` when retrying cannot help) with no secret in it.
    """

    def find_account(self, target: Target, account: str) -> str | None:
        """The account as the target names it (a login, ``'user'@'host'``, an entry's DN), or None
        when it does not exist there. Never creates anything."""
        ...

    def held(self, target: Target, account: str, items: tuple[str, ...]) -> frozenset[str]:
        """Which of ``items`` the account holds right now, directly (not through another grant of
        the target's own: a role it holds through a group it belongs to does not count)."""
        ...

    def elevate(self, target: Target, account: str, items: tuple[str, ...]) -> Mapping[str, Any]:
        """Give the account ``items``, after the same safety checks as provisioning (no role with
        special powers, no admin option). Returns what was done, for the audit log."""
        ...

    def withdraw(self, target: Target, account: str, items: tuple[str, ...]) -> Mapping[str, Any]:
        """Take ``items`` away and leave nothing of them in use: sessions that hold one (a
        database session that ran ``SET ROLE`` to it, say) are ended. Items already gone count as
        withdrawn. Returns what was done, for the audit log."""
        ...
