"""Which roles elevate an existing account rather than create a credential, and as whom.

A role elevates on a target when it says so for the target's kind: ``postgres.existing_login``,
``mariadb.existing_login`` (their roles), or any ``ldap`` access (directory groups). Pure: the
broker's workflow and ``jitgate policy explain`` both ask here; ``account_line`` says in words which
account an identity is elevated as (for an ldap target, the entry's DN or the search that finds it,
with the account escaped the way the directory provider escapes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jitgate.policy.accounts import PLACEHOLDER, mapped_account
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


def account_line(elevation: Elevation, identity: str) -> str:
    """One line: which existing account ``identity`` is elevated as on the target, and with what.

    Pure: nothing is asked of the target, so the account may still turn out not to exist there
    (then the request is refused).
    """
    target = elevation.target
    items = ", ".join(elevation.items)
    account = elevation.account_of(identity)
    if account is None:
        return f"{target.name}: no account mapped for {identity}: a request covering {target.name} is refused"
    if target.kind == "ldap":
        return f"{target.name}: entry {_directory_entry(target, account)} joins {items}"
    noun = "login" if target.kind == "postgres" else "account"
    return f"{target.name}: elevates existing {noun} {account} with {items}"


def _directory_entry(target: Target, account: str) -> str:
    # Loaded here, not at import: only a policy with a directory target needs python-ldap.
    import ldap.dn
    import ldap.filter

    if target.user_dn is not None:
        return f"from user_dn {target.user_dn.replace(PLACEHOLDER, ldap.dn.escape_dn_chars(account))}"
    if target.user_search is not None:
        search = target.user_search
        found = search.filter.replace(PLACEHOLDER, ldap.filter.escape_filter_chars(account))
        return f"found under {search.base} by {found}"
    return f"for {account}"  # the policy model requires one of the two; kept total for the type checker
