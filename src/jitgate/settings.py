"""Broker settings from flags and ``JITGATE_*`` environment variables.

Secrets (the CA passphrase) come from the environment or from a file named by ``*_FILE``; never
from the policy file and never printed. ``repr`` of a secret shows ``**********``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_DATABASE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+]*://\S*")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]*):([0-9]{1,5})")


def _read_secret(path: Path, name: str) -> SecretStr:
    try:
        return SecretStr(path.read_text().strip())
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not readable text"
        raise ValueError(f"JITGATE_{name}: cannot read {path}: {why}") from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JITGATE_", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str | None = None
    policy_file: Path | None = None
    listen: str = "127.0.0.1:8080"
    workers: int = Field(default=1, ge=1, le=64)
    public_url: str | None = None
    audit_key_file: Path | None = None
    ca_passphrase: SecretStr | None = None
    ca_passphrase_file: Path | None = None
    sqlite_busy_timeout_seconds: float = Field(default=10.0, ge=0)
    scheduler_poll_seconds: float = Field(default=1.0, gt=0)
    revocation_backoff_seconds: float = Field(default=2.0, gt=0)
    revocation_backoff_max_seconds: float = Field(default=300.0, gt=0)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_username_claim: str = "preferred_username"
    oidc_groups_claim: str = "groups"
    oidc_admin_groups: list[str] = Field(default_factory=list)
    oidc_namespace: str = Field(default="oidc", pattern=r"^[a-z][a-z0-9-]{0,15}$")
    # Single sign-on for the console (auth/oidc_flow.py): on when the issuer and a client id are set.
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_client_secret_file: Path | None = None
    # Default: ``{public_url or http://listen}/ui/oidc/callback``.
    oidc_redirect_url: str | None = None
    oidc_scopes: str = "openid profile email groups offline_access"
    # How often a console session signed in at the provider is checked there again (refresh token).
    oidc_recheck_seconds: int = Field(default=300, ge=30)
    # The CLI's public client at the issuer (no secret): its ID tokens are accepted as bearer tokens,
    # and ``GET /api/v1/auth/oidc`` tells ``jitgate login --oidc`` the issuer, client and scopes.
    oidc_cli_client_id: str | None = None
    # Space- or comma-separated; offline_access asks for a refresh token.
    oidc_cli_scopes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["openid", "profile", "offline_access"]
    )
    token_lifetime_seconds: int = Field(default=30 * 86400, gt=0)
    token_max_lifetime_seconds: int = Field(default=365 * 86400, gt=0)
    web_session_idle_seconds: int = Field(default=8 * 3600, gt=0)
    web_session_max_seconds: int = Field(default=12 * 3600, gt=0)
    webhook_url: str | None = None
    max_pending_requests_per_requester: int = Field(default=10, ge=1, le=1000)
    webhook_secret: SecretStr | None = None
    webhook_secret_file: Path | None = None
    # Per worker process; see api/serving.py.
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0)
    http_keep_alive_timeout_seconds: float = Field(default=5.0, gt=0)
    http_max_connections: int = Field(default=4096, ge=1)
    http_max_header_bytes: int = Field(default=16384, ge=1024)
    auth_failures_per_source: int = Field(default=20, ge=1)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0)
    # Where signed audit heads are sent: absolute file paths outside data_dir, http(s) URLs,
    # ``syslog:`` (the local syslog) or ``syslog://host:port`` (UDP); comma-separated.
    audit_witness: Annotated[list[str], NoDecode] = Field(default_factory=list)
    audit_witness_seconds: float = Field(default=60.0, gt=0)
    audit_witness_secret: SecretStr | None = None
    audit_witness_secret_file: Path | None = None
    # The SSH gateway (``gateway/``): off unless an address is given.
    gateway_listen: str | None = None
    # Names clients use for the gateway, certified in its host certificate; comma-separated.
    # Empty: the host of ``gateway_listen``.
    gateway_names: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # HOST:PORT clients are told to connect to (``ssh-config --via-gateway``); default the listen address.
    gateway_public_address: str | None = None
    gateway_recordings_dir: Path | None = None
    gateway_warn_seconds: float = Field(default=300.0, ge=0)
    gateway_poll_seconds: float = Field(default=0.25, gt=0, le=1.0)
    gateway_exec_record_bytes: int = Field(default=1024 * 1024, ge=0)
    gateway_max_sessions: int = Field(default=1000, ge=1)
    gateway_max_startups: int = Field(default=100, ge=1)
    gateway_login_timeout_seconds: float = Field(default=10.0, gt=0)
    gateway_ephemeral_key_seconds: int = Field(default=300, ge=30, le=3600)
    gateway_key_lifetime_seconds: int = Field(default=365 * 86400, gt=0)
    # Approvals from Slack (``/api/v1/chat/slack/interactions``): off without a signing secret.
    slack_signing_secret: SecretStr | None = None
    slack_signing_secret_file: Path | None = None
    # Which local jitgate user each Slack account is (auth/slack.py).
    slack_users_file: Path | None = None
    # Where answers to clicks may be posted (Slack's ``response_url``): URL prefixes, comma-separated.
    slack_response_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["https://hooks.slack.com/"]
    )

    @field_validator("audit_witness", "gateway_names", "slack_response_urls", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("oidc_cli_scopes", mode="before")
    @classmethod
    def _scope_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        if isinstance(value, list) and "openid" not in value:
            raise ValueError("JITGATE_OIDC_CLI_SCOPES must include openid")
        return value

    @field_validator("listen", "gateway_listen", "gateway_public_address")
    @classmethod
    def _host_port(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or (value == "" and info.field_name != "listen"):  # empty: off
            return value
        found = _HOST_PORT.fullmatch(value)
        if found is None or not 1 <= int(found.group(2)) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
        return value

    @field_validator("data_dir")
    @classmethod
    def _a_directory(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value and not _DATABASE_URL.fullmatch(value):  # empty: the SQLite default
            raise ValueError("must be a database URL, e.g. postgresql+psycopg://USER@HOST/DB")
        return value

    @field_validator("public_url", "webhook_url", "oidc_issuer", "oidc_jwks_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:  # unset or empty: off
            return value
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("has a port that is not a number") from None
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Settings:
        if self.ca_passphrase is None and self.ca_passphrase_file is not None:
            self.ca_passphrase = _read_secret(self.ca_passphrase_file, "CA_PASSPHRASE_FILE")
        if self.webhook_secret is None and self.webhook_secret_file is not None:
            self.webhook_secret = _read_secret(self.webhook_secret_file, "WEBHOOK_SECRET_FILE")
        if self.audit_witness_secret is None and self.audit_witness_secret_file is not None:
            path = self.audit_witness_secret_file
            self.audit_witness_secret = _read_secret(path, "AUDIT_WITNESS_SECRET_FILE")
        if self.slack_signing_secret is None and self.slack_signing_secret_file is not None:
            self.slack_signing_secret = _read_secret(
                self.slack_signing_secret_file, "SLACK_SIGNING_SECRET_FILE"
            )
        if self.slack_signing_secret is not None and self.slack_signing_secret.get_secret_value() in {
            "",
            "changeme",
        }:
            raise ValueError("JITGATE_SLACK_SIGNING_SECRET is empty or a placeholder; set the app's secret")
        if self.oidc_client_secret is None and self.oidc_client_secret_file is not None:
            self.oidc_client_secret = _read_secret(self.oidc_client_secret_file, "OIDC_CLIENT_SECRET_FILE")
        if self.ca_passphrase is not None and self.ca_passphrase.get_secret_value() in {"", "changeme"}:
            raise ValueError("JITGATE_CA_PASSPHRASE is empty or a placeholder; set a real one or unset it")
        return self

    @model_validator(mode="after")
    def _lifetimes_in_order(self) -> Settings:
        if self.token_lifetime_seconds > self.token_max_lifetime_seconds:
            raise ValueError("JITGATE_TOKEN_LIFETIME_SECONDS exceeds JITGATE_TOKEN_MAX_LIFETIME_SECONDS")
        if self.web_session_idle_seconds > self.web_session_max_seconds:
            raise ValueError("JITGATE_WEB_SESSION_IDLE_SECONDS exceeds JITGATE_WEB_SESSION_MAX_SECONDS")
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'jitgate.db'}"

    @property
    def recordings_dir(self) -> Path:
        return self.gateway_recordings_dir or self.data_dir / "recordings"

    @property
    def gateway_host_port(self) -> tuple[str, int] | None:
        if not self.gateway_listen:
            return None
        host, _, port = self.gateway_listen.rpartition(":")
        return host or "127.0.0.1", int(port)

    @property
    def oidc_web_enabled(self) -> bool:
        """Whether the console offers single sign-on at the OpenID provider."""
        return bool(self.oidc_issuer and self.oidc_client_id)

    @property
    def base_url(self) -> str:
        """The broker's own absolute URL, as browsers reach it."""
        return (self.public_url or f"http://{self.listen}").rstrip("/")

    @property
    def oidc_callback_url(self) -> str:
        return self.oidc_redirect_url or f"{self.base_url}/ui/oidc/callback"

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host or "127.0.0.1", int(port)
