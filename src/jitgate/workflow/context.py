"""What every workflow service needs, bundled once: store, policy, audit log, clock, providers."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from jitgate.audit import backlog, checkpoint, redact
from jitgate.audit.chain import AuditLog, Event
from jitgate.clock import Clock
from jitgate.domain.identity import Identity
from jitgate.errors import (
    AuditIntegrityError,
    InternalError,
    InvalidInput,
    JitgateError,
    ProviderError,
    StorageUnavailable,
)
from jitgate.policy.model import Policy, Target
from jitgate.providers.base import CredentialProvider
from jitgate.store.db import Database
from jitgate.workflow.audit_state import AuditHealth
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
    max_pending_per_requester: int = 10
    audit_health: AuditHealth = field(default_factory=AuditHealth)
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
    def transaction(self, *, parks_audit: bool = False) -> Iterator[Connection]:
        """A write transaction whose audit records are appended together just before it commits.

        Appending last keeps the audit head (the one row every audited change must lock) locked
        for the shortest time, and one head signature covers all of the transaction's records.

        If the audit log cannot be trusted (``AuditIntegrityError``) the transaction fails, unless
        ``parks_audit``: changes that take access away (or record a refusal) must not wait for a
        repair, so they commit with their records parked (``audit/backlog.py``). Anything else,
        including a database failure, still rolls the whole transaction back.
        """
        with self.db.write() as conn:
            pending: list[Event] = []
            conn.info[_PENDING] = pending
            try:
                yield conn
                if parks_audit:
                    self._append_or_park(conn, pending)
                else:
                    try:
                        self.audit.append_many(conn, pending)
                    except AuditIntegrityError as exc:
                        self.audit_health.broken(exc.message)
                        raise
            finally:
                # conn.info lives on the pooled DBAPI connection: never leave the list behind.
                conn.info.pop(_PENDING, None)

    def _append_or_park(self, conn: Connection, events: list[Event]) -> None:
        if not events:
            return
        try:
            # A savepoint, so that a refused append (even a failed INSERT, which aborts a
            # PostgreSQL transaction) leaves the rest of the transaction to commit.
            with conn.begin_nested():
                self.audit.append_many(conn, events)
        except AuditIntegrityError as exc:
            backlog.park(conn, self.audit, events, why=exc.message, now=self.clock.now())
            self.audit_health.broken(exc.message)

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
        """The ``access.refused`` record of ``identity`` attempting ``action`` and failing with ``exc``.

        Never raises: what the caller sent is recorded safely (``audit/redact.py``).
        """
        return redact.refusal(
            at=self.clock.now(),
            actor=identity.name,
            attempted=action,
            error=exc.code,
            reason=exc.message,
            tag=self.audit.withheld_tag,
            **fields,
        )

    @contextmanager
    def refusals_audited(self, identity: Identity, action: str, **fields: Any) -> Iterator[None]:
        """Record a refused attempt in the audit log (its own transaction), then let the error go on."""
        try:
            yield
        except StorageUnavailable:
            raise
        except JitgateError as exc:
            self.record_refusal(identity, action, exc, fields)
            raise
        except Exception as exc:
            # A bug, not a refusal: the caller gets a 500, and the attempt is still on record.
            log.error("unexpected %s during %s by %s", unexpected(exc), action, identity.name)  # noqa: TRY400 - no message
            self.record_refusal(identity, action, InternalError(INTERNAL), fields)
            raise

    def record_refusal(
        self, identity: Identity, action: str, exc: JitgateError, fields: dict[str, Any]
    ) -> None:
        """Record a refused attempt in its own transaction; a storage failure is logged, not raised."""
        try:
            with self.transaction(parks_audit=True) as conn:
                self.record_events(conn, [self.refusal_event(identity, action, exc, **fields)])
        except StorageUnavailable:
            log.exception("could not audit a refused %s by %s", action, identity.name)


INTERNAL = "the broker failed unexpectedly; it logged why"


def unexpected(exc: BaseException) -> str:
    """An unexpected exception for the log: its type and where it was raised, never its message.

    The message of an exception raised on caller data may quote that data (a key, a secret).
    """
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    return f"{type(exc).__name__} at {where or 'unknown'}"
