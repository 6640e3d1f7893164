"""Typed, validated policy objects. Unknown keys are errors; durations are parsed here.

The admin DSN of a database target is never in the policy: only the name of the environment
variable that holds it (``admin_dsn_env``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from jitgate.domain import sshnames
from jitgate.domain.durations import parse_duration
from jitgate.policy.accounts import AccountMapping, LdapAccess, LdapSearch
from jitgate.policy.workloads import WorkloadRule, rules_problem

NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
SUBJECT = re.compile(r"^(user:([a-z][a-z0-9-]{0,15}:)?|group:)[A-Za-z0-9_.@+-]{1,128}$")
"""``user:NAME`` (a local user), ``user:NAMESPACE:SUBJECT`` (an OIDC identity), ``group:NAME``."""


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (write units, e.g. {value}s or {value}m)")
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration")
    return parse_duration(value)


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(Strict):
    """Name, address and port reach ssh_config lines and ssh arguments: ``domain/sshnames`` shapes only."""

    name: str
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    labels: dict[str, str] = Field(default_factory=dict)
    address: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    admin_dsn_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    host_principals: tuple[str, ...] = ()
    options: dict[str, Any] = Field(default_factory=dict)
    # Directory targets (kind ldap). The bind secret is never in the policy: only where to read it.
    url: str | None = Field(default=None, pattern=r"^ldaps?://[^\s]+$")
    bind_dn: str | None = None
    bind_password_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    bind_password_file: str | None = None
    user_dn: str | None = None
    user_search: LdapSearch | None = None
    start_tls: bool = False
    tls_ca_file: str | None = None

    _name_check = field_validator("name")(sshnames.check_target_name)
    _address_check = field_validator("address")(sshnames.check_address)

    @field_validator("host_principals")
    @classmethod
    def _host_principals(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            sshnames.check_address(name)
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> Target:
        if self.kind == "ssh" and not self.address:
            raise ValueError(f"ssh target {self.name!r} needs an address")
        if self.kind in {"postgres", "mariadb"} and not self.admin_dsn_env:
            raise ValueError(f"{self.kind} target {self.name!r} needs admin_dsn_env")
        directory = ("url", "bind_dn", "bind_password_env", "bind_password_file", "user_dn", "user_search")
        if self.kind == "ldap":
            if not self.url or not self.bind_dn:
                raise ValueError(f"ldap target {self.name!r} needs url and bind_dn")
            if (self.bind_password_env is None) == (self.bind_password_file is None):
                raise ValueError(
                    f"ldap target {self.name!r} needs one of bind_password_env, bind_password_file"
                )
            if (self.user_dn is None) == (self.user_search is None):
                raise ValueError(f"ldap target {self.name!r} needs one of user_dn, user_search")
            if self.user_dn is not None and "{user}" not in self.user_dn:
                raise ValueError(f"ldap target {self.name!r}: user_dn needs the {{user}} placeholder")
        elif any(getattr(self, name) is not None for name in directory) or self.start_tls:
            raise ValueError(f"target {self.name!r}: {', '.join(directory)} and start_tls are for kind ldap")
        return self

    @property
    def effective_port(self) -> int:
        defaults = {"ssh": 22, "postgres": 5432, "mariadb": 3306}
        return self.port or defaults.get(self.kind, 0)


class TargetSelector(Strict):
    names: tuple[str, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_way(self) -> TargetSelector:
        if not self.names and not self.labels:
            raise ValueError("targets needs names or labels")
        return self

    def selects(self, target: Target) -> bool:
        if target.name in self.names:
            return True
        return bool(self.labels) and all(target.labels.get(k) == v for k, v in self.labels.items())


class SshAccess(Strict):
    logins: tuple[str, ...] = Field(min_length=1)
    extensions: tuple[str, ...] = ("permit-pty",)
    force_command: str | None = None
    source_address: tuple[str, ...] = ()
    cert_ttl: Duration = timedelta(minutes=5)
    # Direct TCP forwarding (``ssh -L``) through the gateway; certificates of such a role also
    # carry ``permit-port-forwarding`` so a direct connection may forward too.
    port_forwarding: bool = False

    @model_validator(mode="before")
    @classmethod
    def _forwarding_extension(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("port_forwarding") is True:
            extensions = tuple(data.get("extensions", ("permit-pty",)))
            if "permit-port-forwarding" not in extensions:
                data = {**data, "extensions": (*extensions, "permit-port-forwarding")}
        return data

    @field_validator("logins")
    @classmethod
    def _logins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for login in value:
            sshnames.check_login(login)
        return value

    @field_validator("extensions")
    @classmethod
    def _extensions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {
            "permit-pty",
            "permit-X11-forwarding",
            "permit-agent-forwarding",
            "permit-port-forwarding",
            "permit-user-rc",
            "no-touch-required",
        }
        for ext in value:
            if ext not in known:
                raise ValueError(f"{ext!r} is not an OpenSSH certificate extension")
        return value


class PostgresAccess(Strict):
    """``member_of`` roles for a fresh login per grant, or, with ``existing_login``, granted to
    the identity's own login for the grant's window (elevation; no login is created)."""

    member_of: tuple[str, ...] = Field(min_length=1)
    connection_limit: int | None = Field(default=None, ge=1)
    existing_login: AccountMapping | None = None

    @model_validator(mode="after")
    def _elevation(self) -> PostgresAccess:
        if self.existing_login is not None and self.connection_limit is not None:
            raise ValueError("connection_limit is for logins jitgate creates, not with existing_login")
        return self


class MariadbAccess(Strict):
    roles: tuple[str, ...] = ()
    privileges: tuple[str, ...] = ()
    connection_limit: int | None = Field(default=None, ge=1)
    existing_login: AccountMapping | None = None
    """Elevate the identity's own account (``name`` or ``name@host``; host ``%`` when left out)
    with ``roles`` for the grant's window instead of creating an account."""

    @model_validator(mode="after")
    def _something(self) -> MariadbAccess:
        if not self.roles and not self.privileges:
            raise ValueError("mariadb access needs roles or privileges")
        if self.existing_login is not None and (self.privileges or self.connection_limit is not None):
            raise ValueError(
                "with existing_login, mariadb access grants roles only (no privileges, no connection_limit)"
            )
        if self.existing_login is not None and not self.roles:
            raise ValueError("with existing_login, mariadb access needs roles")
        return self


class ReasonRule(Strict):
    required: bool = False
    pattern: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"reason pattern does not compile: {exc}") from exc
        return value


class AutoApproveRule(Strict):
    """Auto-approve when every condition given holds (a rule with none is refused)."""

    requester_groups: tuple[str, ...] = ()
    max_duration: Duration | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> AutoApproveRule:
        if not self.requester_groups and self.max_duration is None:
            raise ValueError("an auto_approve rule needs requester_groups or max_duration")
        return self


ACR = r"^[\x21\x23-\x5b\x5d-\x7e]{1,200}$"
"""An authentication context class reference: printable ASCII without ``"``, ``\\`` or spaces
(they go into ``acr_values`` and into the ``WWW-Authenticate`` challenge)."""


class SignInRequirement(Strict):
    """A fresh or strong sign-in at the identity provider, demanded to request or to approve a role.

    ``fresh_login``: the caller signed in at most this long ago (OIDC ``auth_time``, asked for
    with ``max_age``). ``acr``: the sign-in's ``acr`` is one of these (asked for with
    ``acr_values``). ``for``: the steps it applies to, both by default. Denying never needs it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    fresh_login: Duration | None = None
    acr: tuple[Annotated[str, Field(pattern=ACR)], ...] = ()
    steps: tuple[Literal["request", "approve"], ...] = Field(default=("request", "approve"), alias="for")

    @model_validator(mode="after")
    def _demands_something(self) -> SignInRequirement:
        if self.fresh_login is None and not self.acr:
            raise ValueError("requires needs fresh_login or acr")
        if not self.steps:
            raise ValueError("requires.for needs request, approve or both")
        if self.fresh_login is not None and not timedelta(0) < self.fresh_login <= timedelta(days=1):
            raise ValueError("requires.fresh_login must lie between 1s and 24h")
        return self

    @property
    def max_age_seconds(self) -> int | None:
        return None if self.fresh_login is None else int(self.fresh_login.total_seconds())


def _subjects(value: tuple[str, ...]) -> tuple[str, ...]:
    for subject in value:
        if not SUBJECT.match(subject):
            raise ValueError(f"{subject!r} is not user:NAME, user:oidc:SUBJECT or group:NAME")
    return value


class Role(Strict):
    name: str = Field(pattern=NAME)
    description: str = ""
    targets: TargetSelector
    ssh: SshAccess | None = None
    postgres: PostgresAccess | None = None
    mariadb: MariadbAccess | None = None
    ldap: LdapAccess | None = None
    min_duration: Duration = timedelta(minutes=1)
    default_duration: Duration | None = None
    max_duration: Duration
    requesters: tuple[str, ...] = Field(min_length=1)
    approvers: tuple[str, ...] = ()
    approvals_required: int = Field(default=1, ge=1, le=10)
    approval: Literal["manual", "auto"] = "manual"
    auto_approve: tuple[AutoApproveRule, ...] = ()
    break_glass: bool = False
    reason: ReasonRule = ReasonRule()
    review_timeout: Duration = timedelta(hours=24)
    requires: SignInRequirement | None = None

    _subjects_check = field_validator("requesters", "approvers")(_subjects)

    @model_validator(mode="after")
    def _coherent(self) -> Role:
        if self.min_duration > self.max_duration:
            raise ValueError("min_duration is longer than max_duration")
        default = self.default_duration
        if default is not None and not self.min_duration <= default <= self.max_duration:
            raise ValueError("default_duration must lie between min_duration and max_duration")
        if (self.approval == "manual" or self.break_glass) and not self.approvers:
            raise ValueError(f"role {self.name!r} needs approvers (or approval: auto)")
        nobody_approves = self.approval == "auto" or self.break_glass
        if nobody_approves and self.requires is not None and "request" not in self.requires.steps:
            # Its requests become grants without a review: a step-up at approving would never happen.
            raise ValueError(
                f"role {self.name!r}: requires.for [approve] demands nothing where nobody approves "
                "(approval: auto or break_glass); add request to requires.for"
            )
        return self

    @property
    def duration_default(self) -> timedelta:
        return self.default_duration or min(timedelta(hours=1), self.max_duration)


class Policy(Strict):
    targets: tuple[Target, ...] = ()
    roles: tuple[Role, ...] = ()
    workloads: tuple[WorkloadRule, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> Policy:
        seen: set[str] = set()
        for target in self.targets:
            if target.name in seen:
                raise ValueError(f"target {target.name!r} is defined twice")
            seen.add(target.name)
        role_names: set[str] = set()
        for role in self.roles:
            if role.name in role_names:
                raise ValueError(f"role {role.name!r} is defined twice")
            role_names.add(role.name)
            for name in role.targets.names:
                if name not in seen:
                    raise ValueError(f"role {role.name!r} names unknown target {name!r}")
            chosen = [t for t in self.targets if role.targets.selects(t)]
            if not chosen:
                raise ValueError(f"role {role.name!r} selects no target")
            for target in chosen:
                if target.kind == "ssh" and role.ssh is None:
                    raise ValueError(f"role {role.name!r} reaches ssh target {target.name!r} but has no ssh:")
                if target.kind == "postgres" and role.postgres is None:
                    raise ValueError(
                        f"role {role.name!r} reaches postgres target {target.name!r} but has no postgres:"
                    )
                if target.kind == "mariadb" and role.mariadb is None:
                    raise ValueError(
                        f"role {role.name!r} reaches mariadb target {target.name!r} but has no mariadb:"
                    )
                if target.kind == "ldap" and role.ldap is None:
                    raise ValueError(
                        f"role {role.name!r} reaches ldap target {target.name!r} but has no ldap:"
                    )
        return self

    @model_validator(mode="after")
    def _workloads(self) -> Policy:
        if (problem := rules_problem(self.workloads)) is not None:
            raise ValueError(problem)
        return self

    def role(self, name: str) -> Role | None:
        return next((r for r in self.roles if r.name == name), None)

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)

    def targets_of(self, role: Role) -> tuple[Target, ...]:
        return tuple(t for t in self.targets if role.targets.selects(t))
