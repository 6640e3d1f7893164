"""Assembling a broker from settings: database (migrated), policy, audit log, providers, scheduler.

Used by ``jitgate server`` and by offline admin commands (``users add``, ``audit verify``) alike,
so that both see the same data directory the same way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from jitgate.audit import checkpoint
from jitgate.audit import keys as audit_keys
from jitgate.audit.chain import AuditLog
from jitgate.auth.base import Authenticator
from jitgate.auth.oidc import ClaimMapping, OidcAuthenticator
from jitgate.auth.oidc_flow import OidcWebSignIn
from jitgate.auth.oidc_provider import OpenIdProvider, check_issuer_url
from jitgate.auth.slack import SlackUsers, load_slack_users
from jitgate.auth.throttle import FailureThrottle
from jitgate.auth.tokens import TokenAuthenticator
from jitgate.auth.workloads import WorkloadAuthenticator, start_problem
from jitgate.clock import Clock, SystemClock
from jitgate.domain.identity import SYSTEM
from jitgate.errors import InvalidInput, PolicyFileError, StorageUnavailable
from jitgate.policy.loader import load_policy
from jitgate.policy.model import Policy
from jitgate.providers.base import ProviderContext
from jitgate.providers.registry import load_providers, validate_policy
from jitgate.settings import Settings
from jitgate.store.db import Database, sqlite_path, storage_error
from jitgate.store.migrate import upgrade
from jitgate.workflow import witness
from jitgate.workflow.chat import SlackApprovals
from jitgate.workflow.chat_replies import ResponseSender
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
    slack: SlackApprovals | None = None
    # Single sign-on for the console; None unless an issuer and a client id are configured.
    oidc_web: OidcWebSignIn | None = None
    # Held while this process verifies the whole audit chain (the API's and the console's alike):
    # it reads every record, seconds of a core on a long log, so a second one waits its turn.
    verifying: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tokens(self) -> TokenAuthenticator:
        """The local token authenticator (always present), for cache invalidation after changes."""
        return next(a for a in self.authenticators if isinstance(a, TokenAuthenticator))

    def close(self) -> None:
        self.scheduler.stop()
        if self.oidc_web is not None:
            self.oidc_web.provider.close()
        self.ctx.db.dispose()


def load_policy_file(settings: Settings) -> tuple[Policy, str]:
    if settings.policy_file is None:
        raise PolicyFileError("no policy file given (--policy FILE or JITGATE_POLICY_FILE)")
    policy = load_policy(settings.policy_file)
    digest = hashlib.sha256(settings.policy_file.read_bytes()).hexdigest()
    return policy, digest


def slack_users(settings: Settings) -> SlackUsers | None:
    """The Slack user map, if approvals from Slack are configured; checked before anything starts."""
    if settings.slack_signing_secret is None:
        return None
    if settings.slack_users_file is None:
        raise InvalidInput("JITGATE_SLACK_USERS_FILE must be set with JITGATE_SLACK_SIGNING_SECRET")
    return load_slack_users(settings.slack_users_file)


def build_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    """Everything ``jitgate server`` runs on. The policy is checked before the database is touched."""
    clock = clock or SystemClock()
    policy, digest = load_policy_file(settings)
    check_oidc_settings(settings)
    if problem := start_problem(policy.workloads, settings.oidc_issuer, settings.oidc_namespace):
        raise PolicyFileError(problem)
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
    chat_users = slack_users(settings)
    replies = ResponseSender(settings.slack_response_urls) if chat_users is not None else None
    db = open_database(settings)
    audit = open_audit(settings)
    notifier = (
        WebhookNotifier(
            settings.webhook_url,
            settings.webhook_secret.get_secret_value() if settings.webhook_secret else None,
            public_url=settings.public_url,
            slack_id_of=chat_users.slack_id if chat_users is not None else None,
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
    slack = None
    if chat_users is not None and replies is not None and settings.slack_signing_secret is not None:
        slack = SlackApprovals(
            ctx,
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            users=chat_users,
            public_url=settings.public_url,
            replies=replies,
        )
    return Runtime(
        settings=settings,
        slack=slack,
        ctx=ctx,
        scheduler=scheduler,
        authenticators=authenticators(settings, db, clock, ctx.policies),
        policy_digest=digest,
        auth_throttle=FailureThrottle(
            limit=settings.auth_failures_per_source, window_seconds=settings.auth_failure_window_seconds
        ),
        oidc_web=oidc_web_sign_in(settings, db, clock),
    )


def check_oidc_settings(settings: Settings) -> None:
    """Refuse a single sign-on configuration that cannot work, before anything is opened."""
    if not settings.oidc_web_enabled or settings.oidc_issuer is None:
        return
    try:
        check_issuer_url(settings.oidc_issuer)
    except ValueError as exc:
        raise PolicyFileError(str(exc)) from None
    if "openid" not in settings.oidc_scopes.split():
        raise PolicyFileError("JITGATE_OIDC_SCOPES must contain openid")


def oidc_web_sign_in(settings: Settings, db: Database, clock: Clock) -> OidcWebSignIn | None:
    """The console's single sign-on, when an issuer and a client id are configured."""
    if not settings.oidc_web_enabled or settings.oidc_issuer is None or settings.oidc_client_id is None:
        return None
    secret = settings.oidc_client_secret
    provider = OpenIdProvider(
        settings.oidc_issuer,
        client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        clock=clock,
        jwks_url=settings.oidc_jwks_url,
    )
    return OidcWebSignIn(
        provider,
        db,
        clock,
        ClaimMapping(
            settings.oidc_namespace,
            settings.oidc_username_claim,
            settings.oidc_groups_claim,
            frozenset(settings.oidc_admin_groups),
        ),
        redirect_uri=settings.oidc_callback_url,
        scopes=settings.oidc_scopes,
        recheck=timedelta(seconds=settings.oidc_recheck_seconds),
    )


def authenticators(
    settings: Settings, db: Database, clock: Clock | None = None, policies: PolicyHolder | None = None
) -> list[Authenticator]:
    """Local API tokens always; OIDC bearer tokens when an issuer and an audience are configured;
    workloads' tokens by the rules of the policy in force (``policies``)."""
    found: list[Authenticator] = [TokenAuthenticator(db, clock=clock)]
    audiences = [a for a in (settings.oidc_audience, settings.oidc_cli_client_id) if a]
    if settings.oidc_issuer and (audiences or not settings.oidc_web_enabled):
        # An issuer with only the console's client id signs people in to the console; the API then
        # takes no OIDC tokens (the console's ID tokens are not API credentials).
        if not audiences:
            raise PolicyFileError(
                "JITGATE_OIDC_AUDIENCE or JITGATE_OIDC_CLI_CLIENT_ID must be set with JITGATE_OIDC_ISSUER"
            )
        found.append(
            OidcAuthenticator(
                issuer=settings.oidc_issuer,
                audience=audiences,
                jwks_url=settings.oidc_jwks_url,
                username_claim=settings.oidc_username_claim,
                groups_claim=settings.oidc_groups_claim,
                admin_groups=settings.oidc_admin_groups,
                namespace=settings.oidc_namespace,
            )
        )
    if policies is not None:
        found.append(WorkloadAuthenticator(lambda: policies.current.workloads))
    return found
