"""Assembling a broker from settings: database (migrated), policy, audit log, providers, scheduler.

Used by ``jitgate server`` and by offline admin commands (``users add``, ``audit verify``) alike,
so that both see the same data directory the same way.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from jitgate.audit import checkpoint
from jitgate.audit import keys as audit_keys
from jitgate.audit.chain import AuditLog
from jitgate.auth.base import Authenticator
from jitgate.auth.oidc import OidcAuthenticator
from jitgate.auth.throttle import FailureThrottle
from jitgate.auth.tokens import TokenAuthenticator
from jitgate.clock import Clock, SystemClock
from jitgate.domain.identity import SYSTEM
from jitgate.errors import PolicyFileError, StorageUnavailable
from jitgate.policy.loader import load_policy
from jitgate.policy.model import Policy
from jitgate.providers.base import ProviderContext
from jitgate.providers.registry import load_providers, validate_policy
from jitgate.settings import Settings
from jitgate.store.db import Database, sqlite_path, storage_error
from jitgate.store.migrate import upgrade
from jitgate.workflow import witness
from jitgate.workflow.context import NullNotifier, PolicyHolder, WorkflowContext
from jitgate.workflow.notify import WebhookNotifier
from jitgate.workflow.scheduler import Scheduler
from jitgate.workflow.witness import WitnessSender

log = logging.getLogger("jitgate")


def prepare_data_dir(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


def open_database(settings: Settings) -> Database:
    """Open (and create or migrate) the broker's database."""
    from sqlalchemy.exc import OperationalError

    if settings.database_url is None:
        prepare_data_dir(settings.data_dir)
        # Private like everything else in the directory; SQLite gives its -wal and -shm files
        # the mode of the database file.
        database = sqlite_path(settings.effective_database_url)
        if database is not None:
            database.touch(mode=0o600, exist_ok=True)
            database.chmod(0o600)
    db = Database(settings.effective_database_url, busy_timeout=settings.sqlite_busy_timeout_seconds)
    try:
        upgrade(db.engine)
    except OperationalError as exc:
        db.dispose()
        raise storage_error(exc) from None
    return db


def open_audit(settings: Settings) -> AuditLog:
    key_file = (
        Path(os.environ["JITGATE_AUDIT_KEY_FILE"]) if os.environ.get("JITGATE_AUDIT_KEY_FILE") else None
    )
    return AuditLog(
        audit_keys.load_for(settings.data_dir, key_file),
        checkpoint_path=checkpoint.default_path(settings.data_dir),
    )


def checkpoint_now(settings: Settings, db: Database, audit: AuditLog) -> None:
    """Copy the audit head out of the database now: offline commands have no scheduler to do it."""
    with db.read() as conn:
        head = audit.check_head(conn)
        if head is not None:
            writer = checkpoint.Writer(checkpoint.default_path(settings.data_dir))
            moved = writer.update(head, checkpoint.hash_at(conn))
            if not moved.ok:
                log.error("the audit checkpoint was not moved: %s; run jitgate audit verify", moved.problem)


def audit_witnesses(settings: Settings, audit: AuditLog, clock: Clock) -> WitnessSender | None:
    """The sender to ``JITGATE_AUDIT_WITNESS``, or None if no witness is configured."""
    if not settings.audit_witness:
        return None
    secret = settings.audit_witness_secret or settings.webhook_secret
    plain = secret.get_secret_value() if secret else None
    found = [witness.parse(spec, settings.data_dir, plain) for spec in settings.audit_witness]
    return WitnessSender(found, audit.public_key, clock, interval=settings.audit_witness_seconds)


@dataclass
class Runtime:
    settings: Settings
    ctx: WorkflowContext
    scheduler: Scheduler
    authenticators: list[Authenticator]
    policy_digest: str
    auth_throttle: FailureThrottle = field(default_factory=FailureThrottle)

    @property
    def tokens(self) -> TokenAuthenticator:
        """The local token authenticator (always present), for cache invalidation after changes."""
        return next(a for a in self.authenticators if isinstance(a, TokenAuthenticator))

    def close(self) -> None:
        self.scheduler.stop()
        self.ctx.db.dispose()


def load_policy_file(settings: Settings) -> tuple[Policy, str]:
    if settings.policy_file is None:
        raise PolicyFileError("no policy file given (--policy FILE or JITGATE_POLICY_FILE)")
    policy = load_policy(settings.policy_file)
    digest = hashlib.sha256(settings.policy_file.read_bytes()).hexdigest()
    return policy, digest


def build_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    """Everything ``jitgate server`` runs on. The policy is checked before the database is touched."""
    clock = clock or SystemClock()
    policy, digest = load_policy_file(settings)
    options = {}
    if settings.ca_passphrase is not None:
        options["ca_passphrase"] = settings.ca_passphrase.get_secret_value()
    provider_ctx = ProviderContext(
        data_dir=settings.data_dir, environ=os.environ, clock=clock, options=options
    )
    providers = load_providers(provider_ctx, {t.kind for t in policy.targets} | {"ssh"})
    problems = validate_policy(policy, providers)
    if problems:
        name = settings.policy_file.name if settings.policy_file else "policy"
        lines = [f"{name}: {p}" for p in problems]
        raise PolicyFileError(lines[0], lines)
    db = open_database(settings)
    audit = open_audit(settings)
    notifier = (
        WebhookNotifier(
            settings.webhook_url,
            settings.webhook_secret.get_secret_value() if settings.webhook_secret else None,
        )
        if settings.webhook_url
        else NullNotifier()
    )
    ctx = WorkflowContext(
        db=db,
        policies=PolicyHolder(policy),
        audit=audit,
        clock=clock,
        providers=providers,
        notifier=notifier,
        revocation_backoff_seconds=settings.revocation_backoff_seconds,
        revocation_backoff_max_seconds=settings.revocation_backoff_max_seconds,
        audit_checkpoint=checkpoint.Writer(checkpoint.default_path(settings.data_dir)),
        max_pending_per_requester=settings.max_pending_requests_per_requester,
        audit_witness=audit_witnesses(settings, audit, clock),
    )
    scheduler = Scheduler(ctx, poll_seconds=settings.scheduler_poll_seconds)
    ctx.wake_scheduler = scheduler.wake
    try:
        # Parked if the audit log is broken: a broker must start to end access even then.
        with ctx.transaction(parks_audit=True) as conn:
            ctx.audit_event(
                conn,
                SYSTEM.name,
                "policy.loaded",
                details={
                    "file": str(settings.policy_file),
                    "sha256": digest,
                    "roles": len(policy.roles),
                    "targets": len(policy.targets),
                },
            )
    except StorageUnavailable:
        db.dispose()
        raise
    return Runtime(
        settings=settings,
        ctx=ctx,
        scheduler=scheduler,
        authenticators=authenticators(settings, db, clock),
        policy_digest=digest,
        auth_throttle=FailureThrottle(
            limit=settings.auth_failures_per_source, window_seconds=settings.auth_failure_window_seconds
        ),
    )


def authenticators(settings: Settings, db: Database, clock: Clock | None = None) -> list[Authenticator]:
    """Local API tokens always; OIDC bearer tokens when an issuer is configured."""
    found: list[Authenticator] = [TokenAuthenticator(db, clock=clock)]
    if settings.oidc_issuer:
        audiences = [a for a in (settings.oidc_audience, settings.oidc_cli_client_id) if a]
        if not audiences:
            raise PolicyFileError(
                "JITGATE_OIDC_AUDIENCE or JITGATE_OIDC_CLI_CLIENT_ID must be set with JITGATE_OIDC_ISSUER"
            )
        found.append(
            OidcAuthenticator(
                issuer=settings.oidc_issuer,
                audience=audiences,
                jwks_url=settings.oidc_jwks_url
                or settings.oidc_issuer.rstrip("/") + "/.well-known/jwks.json",
                username_claim=settings.oidc_username_claim,
                groups_claim=settings.oidc_groups_claim,
                admin_groups=settings.oidc_admin_groups,
                namespace=settings.oidc_namespace,
            )
        )
    return found
