"""What every workflow service needs, bundled once: store, policy, audit log, clock, providers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from jitgate.audit import checkpoint
from jitgate.audit.chain import AuditLog, Event
from jitgate.clock import Clock
from jitgate.domain.identity import Identity
from jitgate.errors import InvalidInput, JitgateError, ProviderError, StorageUnavailable
from jitgate.policy.model import Policy, Target
from jitgate.providers.base import CredentialProvider
from jitgate.store.db import Database
from jitgate.workflow.witness import WitnessSender

log = logging.getLogger("jitgate.workflow")
_PENDING = "jitgate_audit_pending"


class Notifier(Protocol):
    """Tells people about workflow events (webhooks, chat). Called after the commit, never inside."""

    def send(self, event: str, payload: dict[str, Any]) -> None: ...


class NullNotifier:
    def send(self, event: str, payload: dict[str, Any]) -> None:
        log.debug("notification %s", event)


class PolicyHolder:
    """The policy in force; replaced whole on reload so readers never see half of one."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._lock = threading.Lock()

    @property
    def current(self) -> Policy:
        return self._policy

    def replace(self, policy: Policy) -> None:
        with self._lock:
            self._policy = policy


@dataclass
class WorkflowContext:
    db: Database
    policies: PolicyHolder
    audit: AuditLog
    clock: Clock
    providers: dict[str, CredentialProvider] = field(default_factory=dict)
    notifier: Notifier = field(default_factory=NullNotifier)
    wake_scheduler: Callable[..., None] = lambda *_: None
    revocation_backoff_seconds: float = 2.0
    revocation_backoff_max_seconds: float = 300.0
    audit_checkpoint: checkpoint.Writer | None = None
    audit_witness: WitnessSender | None = None

    @property
    def policy(self) -> Policy:
        return self.policies.current

    def provider_for(self, target: Target) -> CredentialProvider:
        provider = self.providers.get(target.kind)
        if provider is None:
            raise ProviderError(f"no credential provider for kind {target.kind!r} (target {target.name})")
        return provider

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction whose audit records are appended together just before it commits.

        Appending last keeps the audit head (the one row every audited change must lock) locked
        for the shortest time, and one head signature covers all of the transaction's records.
        """
        with self.db.write() as conn:
            pending: list[Event] = []
            conn.info[_PENDING] = pending
            try:
                yield conn
                self.audit.append_many(conn, pending)
            finally:
                # conn.info lives on the pooled DBAPI connection: never leave the list behind.
                conn.info.pop(_PENDING, None)

    def audit_event(self, conn: Connection, actor: str, action: str, **fields: Any) -> None:
        """Record an audit event in ``conn``'s transaction (at its end, inside ``transaction()``)."""
        self.record_events(conn, [self.checked_event(actor, action, **fields)])

    def checked_event(self, actor: str, action: str, **fields: Any) -> Event:
        """An audit event ready to record, or ``InvalidInput`` if it would record a secret.

        Building the record before writing anything it describes lets a step be refused whole.
        """
        try:
            return Event.checked(at=self.clock.now(), actor=actor, action=action, **fields)
        except ValueError as exc:
            # Something the caller typed (a reason, a comment) looks like a secret: refuse the
            # whole step rather than record the secret or drop the record.
            raise InvalidInput(f"refused: {exc}") from None

    def record_events(self, conn: Connection, events: list[Event]) -> None:
        pending = conn.info.get(_PENDING)
        if pending is None:
            self.audit.append_many(conn, events)
        else:
            pending.extend(events)

    def refusal_event(self, identity: Identity, action: str, exc: JitgateError, **fields: Any) -> Event:
        """The ``access.refused`` record of ``identity`` attempting ``action`` and failing with ``exc``."""
        details = dict(fields.pop("details", None) or {})
        details.update({"attempted": action, "error": exc.code, "reason": exc.message})
        return self.checked_event(identity.name, "access.refused", details=details, **fields)

    @contextmanager
    def refusals_audited(self, identity: Identity, action: str, **fields: Any) -> Iterator[None]:
        """Record a refused attempt in the audit log (its own transaction), then let the error go on."""
        try:
            yield
        except StorageUnavailable:
            raise
        except JitgateError as exc:
            try:
                with self.db.write() as conn:
                    self.record_events(conn, [self.refusal_event(identity, action, exc, **fields)])
            except StorageUnavailable:
                log.exception("could not audit a refused %s by %s", action, identity.name)
            raise
