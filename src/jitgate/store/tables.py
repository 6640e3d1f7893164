"""The schema, as SQLAlchemy Core tables. Alembic migrations (``store/migrations``) create it.

Times are stored as naive UTC (``UTCDateTime``) on both SQLite and PostgreSQL and always come
back aware: the broker's clock is the only clock; the database's ``now()`` is never used.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC in Python, naive UTC in the database."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use the injected clock")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


users = sa.Table(
    "users",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("groups", sa.JSON, nullable=False),
    sa.Column("admin", sa.Boolean, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_name", sa.ForeignKey("users.name"), nullable=False, index=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    # Coarse: written at most once per ``auth.tokens.TOUCH_EVERY``, never on every request.
    sa.Column("last_used_at", UTCDateTime),
)

web_sessions = sa.Table(
    "web_sessions",
    metadata,
    # SHA-256 of the session id in the cookie; the id itself is never stored.
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("user_name", sa.String(128), nullable=False, index=True),
    # The API token that opened the session (local users): revoking it ends the session.
    sa.Column("token_id", sa.String(32)),
    # Who signed in, as proven then (groups of an OIDC identity are not kept anywhere else).
    sa.Column("identity", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    # One message the broker wrote for the next page, shown once.
    sa.Column("flash", sa.JSON),
    # A session opened by signing in at the OpenID provider: what signing out and re-checking need
    # (the ID token as logout hint, the refresh token, when the provider is asked again).
    sa.Column("oidc", sa.JSON),
)

oidc_sign_ins = sa.Table(
    "oidc_sign_ins",
    metadata,
    # SHA-256 of the ``state`` sent to the provider; each sign-in can be completed once.
    sa.Column("state_hash", sa.String(64), primary_key=True),
    sa.Column("nonce", sa.String(128), nullable=False),
    sa.Column("code_verifier", sa.String(128), nullable=False),
    # Where the browser goes afterwards: a path of the console's own, never a URL from elsewhere.
    sa.Column("return_to", sa.String(512), nullable=False),
    # A step-up: what the provider was asked for, checked again on the ID token that comes back.
    sa.Column("max_age_s", sa.Integer),
    sa.Column("acr_values", sa.JSON),
    # SHA-256 of the pre-session cookie of the browser that started the sign-in (login CSRF).
    sa.Column("browser_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)

chat_replays = sa.Table(
    "chat_replays",
    metadata,
    # SHA-256 of a signed chat interaction's signature: the same request is acted on once.
    sa.Column("signature_hash", sa.String(64), primary_key=True),
    sa.Column("seen_at", UTCDateTime, nullable=False, index=True),
)

requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("requester", sa.String(128), nullable=False, index=True),
    sa.Column("role", sa.String(64), nullable=False),
    sa.Column("targets", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("duration_s", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("review_deadline", UTCDateTime, nullable=False),
    sa.Column("start_at", UTCDateTime),
    sa.Column("extends_grant_id", sa.String(32), index=True),
    sa.Column("break_glass", sa.Boolean, nullable=False),
    sa.Column("auto_approved", sa.String(64)),
    sa.Column("decided_at", UTCDateTime),
    sa.Index(None, "state", "review_deadline"),
    sa.Index(None, "state", "created_at"),
)

reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.ForeignKey("requests.id"), nullable=False),
    sa.Column("reviewer", sa.String(128), nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    # One vote per reviewer, held by the database as well as by the domain rule.
    sa.UniqueConstraint("request_id", "reviewer"),
)

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("request_id", sa.ForeignKey("requests.id"), nullable=False, unique=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("role", sa.String(64), nullable=False),
    sa.Column("targets", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("starts_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime),
    sa.Column("end_reason", sa.String(16)),
    sa.Column("break_glass", sa.Boolean, nullable=False),
    sa.Column("expiry_warned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index(None, "state", "expires_at"),
    sa.Index(None, "state", "starts_at"),
    sa.Index(None, "holder", "state"),
)

credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("grant_id", sa.ForeignKey("grants.id"), nullable=False, index=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("handle", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("valid_after", UTCDateTime),
    sa.Column("valid_before", UTCDateTime),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
    sa.UniqueConstraint("kind", "handle"),
    sa.Index(None, "kind", "revoked_at", "valid_before"),
)

revocations = sa.Table(
    "revocations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("credential_id", sa.ForeignKey("credentials.id"), nullable=False, unique=True),
    sa.Column("grant_id", sa.String(32), nullable=False, index=True),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("handle", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("done_at", UTCDateTime),
    # ``revoke`` a credential jitgate made; ``elevate`` or ``withdraw`` an existing account.
    sa.Column("action", sa.String(8), nullable=False, server_default="revoke"),
    # Work on the same account at the same target runs one item at a time (``lock_key``): each
    # item is claimed until ``claimed_until``, and none of the same key is claimed meanwhile.
    sa.Column("lock_key", sa.String(400), index=True),
    sa.Column("claimed_until", UTCDateTime),
    sa.Index(None, "state", "next_attempt_at"),
)

elevations = sa.Table(
    "elevations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("credential_id", sa.ForeignKey("credentials.id"), nullable=False, index=True),
    sa.Column("grant_id", sa.String(32), nullable=False),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("account", sa.String(255), nullable=False),
    sa.Column("item", sa.String(512), nullable=False),
    # planned (nothing done at the target) -> applying (may hold it) -> held -> released
    sa.Column("state", sa.String(16), nullable=False),
    # Whether the account held the item before any grant of jitgate's gave it (None: not looked yet).
    sa.Column("prior", sa.Boolean),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("released_at", UTCDateTime),
    sa.Column("outcome", sa.String(255)),
    sa.Index(None, "target", "account", "item", "state"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    sa.Column("actor", sa.String(128), nullable=False, index=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(32), index=True),
    sa.Column("grant_id", sa.String(32)),
    sa.Column("role", sa.String(64), index=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    # The audit page's filters page newest first within an actor, an action or a role.
    sa.Index(None, "actor", "seq"),
    sa.Index(None, "action", "seq"),
    sa.Index(None, "role", "seq"),
    sa.Index(None, "grant_id", "seq"),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(128), nullable=False),
)

# Audit records of changes that ended access while the audit log could not be extended, waiting
# to be appended once it is repaired (``audit/backlog.py``). ``event`` is the record's fields.
audit_backlog = sa.Table(
    "audit_backlog",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("parked_at", UTCDateTime, nullable=False),
    sa.Column("why", sa.Text, nullable=False),
    sa.Column("event", sa.JSON, nullable=False),
)

# OpenSSH public keys users register to sign in at the SSH gateway. A key authenticates its holder
# to the gateway only: no target trusts it. ``ephemeral`` keys are made in memory by
# ``jitgate ssh --via-gateway`` and end within minutes.
user_keys = sa.Table(
    "user_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False, index=True),
    # ``SHA256:…`` of the key blob; one holder per key, so a key names one person.
    sa.Column("fingerprint", sa.String(80), nullable=False, unique=True),
    sa.Column("key_type", sa.String(64), nullable=False),
    sa.Column("public_key", sa.Text, nullable=False),
    sa.Column("comment", sa.String(200), nullable=False),
    sa.Column("ephemeral", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("last_used_at", UTCDateTime),
)

# One row per connection through the SSH gateway, from the moment its onward certificate is
# minted. ``seen_at`` is the owning gateway's heartbeat: a live row whose gateway stopped beating
# is ended by whoever notices (the gateway's connections died with it). ``kill_requested_at`` is
# how an admin on any broker ends a session held by another process.
gateway_sessions = sa.Table(
    "gateway_sessions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("login", sa.String(64), nullable=False),
    sa.Column("grant_id", sa.String(32), nullable=False, index=True),
    sa.Column("credential_serial", sa.String(32), nullable=False),
    sa.Column("source", sa.String(80), nullable=False),
    sa.Column("gateway", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("seen_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime),
    sa.Column("end_reason", sa.String(200)),
    sa.Column("kill_requested_at", UTCDateTime),
    sa.Column("kill_requested_by", sa.String(128)),
    sa.Column("bytes_in", sa.BigInteger, nullable=False),
    sa.Column("bytes_out", sa.BigInteger, nullable=False),
    # [{channel, kind, file, sha256, size, truncated}] once the session has ended.
    sa.Column("recordings", sa.JSON, nullable=False),
    sa.Index(None, "state", "gateway"),
    sa.Index(None, "holder", "started_at"),
)
