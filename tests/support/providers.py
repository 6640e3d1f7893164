"""A credential provider for workflow tests whose target can be switched off and on.

Real targets (sshd, PostgreSQL, MariaDB) are tested in their own suites; this one exists to drive
the broker's retry and bookkeeping paths deterministically. It keeps its "logins" in a set.
"""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

from jitgate.errors import ProviderError, TargetUnreachable
from jitgate.policy.model import Target
from jitgate.providers.base import Health, Issued, IssueRequest


class SwitchableProvider:
    kind = "fake"
    revocable = True

    def __init__(self) -> None:
        self.up = True
        self.logins: set[str] = set()
        self.revoke_calls = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def new_handle(self, request: IssueRequest) -> str:
        return f"jit_{request.identity.name}_{next(self._ids)}"

    def issue(self, request: IssueRequest, handle: str) -> Issued:
        if not self.up:
            raise ProviderError(f"target {request.target.name} is unreachable")
        with self._lock:
            self.logins.add(handle)
        until = min(request.grant.expires_at, request.now + timedelta(hours=1))
        return Issued(
            handle=handle,
            valid_after=request.now,
            valid_before=until,
            record={"login": handle},
            secret={"user": handle, "password": "s3cret-" + handle},
        )

    def revoke(self, target: Target, handle: str) -> None:
        with self._lock:
            self.revoke_calls += 1
        if not self.up:
            raise ProviderError(f"target {target.name} is unreachable")
        with self._lock:
            self.logins.discard(handle)

    def check(self, target: Target) -> Health:
        return Health(self.up, "up" if self.up else "down")


class SwitchableElevation:
    """An elevation target (kind ``ldap`` in the policy) that keeps accounts and what they hold in
    a dict, and can be switched off and on; for the broker's counting and retry paths."""

    kind = "ldap"
    revocable = True

    def __init__(self, accounts: dict[str, set[str]] | None = None) -> None:
        self.up = True
        self.accounts: dict[str, set[str]] = accounts if accounts is not None else {}
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []
        self._lock = threading.Lock()

    def _reachable(self, target: Target) -> None:
        if not self.up:
            raise TargetUnreachable(f"target {target.name}: cannot connect: connection refused")

    def find_account(self, target: Target, account: str) -> str | None:
        self._reachable(target)
        return f"uid={account}" if account in self.accounts else None

    def held(self, target: Target, account: str, items: tuple[str, ...]) -> frozenset[str]:
        self._reachable(target)
        with self._lock:
            return frozenset(self.accounts[account.removeprefix("uid=")] & set(items))

    def elevate(self, target: Target, account: str, items: tuple[str, ...]) -> dict[str, object]:
        self._reachable(target)
        with self._lock:
            self.calls.append(("elevate", account, items))
            self.accounts[account.removeprefix("uid=")].update(items)
        return {"joined": list(items)}

    def withdraw(self, target: Target, account: str, items: tuple[str, ...]) -> dict[str, object]:
        self._reachable(target)
        with self._lock:
            self.calls.append(("withdraw", account, items))
            self.accounts.get(account.removeprefix("uid="), set()).difference_update(items)
        return {"left": list(items)}

    def new_handle(self, request: IssueRequest) -> str:
        raise ProviderError("elevation only")

    def issue(self, request: IssueRequest, handle: str) -> Issued:
        raise ProviderError("elevation only")

    def revoke(self, target: Target, handle: str) -> None:
        raise ProviderError("elevation only")

    def check(self, target: Target) -> Health:
        return Health(self.up, "up" if self.up else "down")
