"""Which roles elevate an existing account rather than create a credential, and as whom.

A role elevates on a target when it says so for the target's kind: ``postgres.existing_login``,
``mariadb.existing_login`` (their roles), or any ``ldap`` access (directory groups). Pure: the
broker's workflow and ``jitgate policy explain`` both ask here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jitgate.policy.accounts import mapped_account
from jitgate.policy.model import Role, Target
from jitgate.providers.mariadb_accounts import account_from_template


@dataclass(frozen=True, slots=True)
class Elevation:
    """What ``role`` gives an existing account on ``target``: ``items`` (roles, group DNs)."""

    target: Target
    accounts: str | Mapping[str, str]
    items: tuple[str, ...]

    def account_of(self, identity: str) -> str | None:
        """The account ``identity`` is elevated as here, or None when the policy maps it to none."""
        if self.target.kind == "mariadb" and isinstance(self.accounts, str):
            return account_from_template(self.accounts, identity)  # the identity never chooses the host
        return mapped_account(self.accounts, identity)


def elevation_of(role: Role, target: Target) -> Elevation | None:
    """The elevation ``role`` grants on ``target``, or None when it provisions (or gives nothing)."""
    if target.kind == "postgres" and role.postgres is not None and role.postgres.existing_login is not None:
        return Elevation(target, role.postgres.existing_login, tuple(dict.fromkeys(role.postgres.member_of)))
    if target.kind == "mariadb" and role.mariadb is not None and role.mariadb.existing_login is not None:
        return Elevation(target, role.mariadb.existing_login, tuple(dict.fromkeys(role.mariadb.roles)))
    if target.kind == "ldap" and role.ldap is not None:
        return Elevation(target, role.ldap.existing_account, role.ldap.groups)
    return None


def elevations_of(role: Role, targets: tuple[Target, ...]) -> list[Elevation]:
    return [found for target in targets if (found := elevation_of(role, target)) is not None]
