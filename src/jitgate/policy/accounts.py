"""Which existing account at a target a jitgate identity is elevated as, and what a role grants it.

A role that elevates names the account by a template (``"{user}"``: the identity's name, the only
placeholder) or by an explicit map from identity names to accounts; an identity missing from the
map has no account there, and the broker refuses its request rather than inventing one. The
account is only ever looked up at the target, never created.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from jitgate.policy.dn import canonical_dn

PLACEHOLDER = "{user}"
_BRACES = re.compile(r"[{}]")
_ACCOUNT = re.compile(r"^[^\x00-\x1f\x7f]{1,255}$")


def _account_mapping(value: Any) -> Any:
    if isinstance(value, str):
        rest = value.replace(PLACEHOLDER, "")
        if _BRACES.search(rest):
            raise ValueError(f"{value!r}: the only placeholder an account template may hold is {PLACEHOLDER}")
        if not _ACCOUNT.match(value):
            raise ValueError(f"{value!r} is not an account template")
        return value
    if isinstance(value, Mapping):
        if not value:
            raise ValueError("an account map needs at least one entry (identity: account)")
        for name, account in value.items():
            if not isinstance(name, str) or not isinstance(account, str) or not _ACCOUNT.match(account):
                raise ValueError(f"account map entry {name!r}: {account!r} is not an account name")
            if _BRACES.search(account):
                raise ValueError(f"account map entry {name!r}: an explicit account holds no placeholder")
        return dict(value)
    raise ValueError("an existing account is a template such as '{user}' or a map of identity: account")


AccountMapping = Annotated[str | dict[str, str], BeforeValidator(_account_mapping)]
"""``"{user}"``-style template, or ``{identity name: account}``."""


def mapped_account(mapping: str | Mapping[str, str], identity: str) -> str | None:
    """The account ``identity`` maps to, or None when the map leaves it out."""
    if isinstance(mapping, str):
        return mapping.replace(PLACEHOLDER, identity)
    return mapping.get(identity)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LdapAccess(_Strict):
    """Directory groups a role joins the identity's entry to for the grant's window.

    The group DNs are kept in their canonical spelling (``policy/dn.py``: lowercase, no spaces
    around separators, RFC 4514 escapes), so two spellings of one group are one item.

    ``existing_account`` is the value the target's ``user_dn`` template or ``user_search`` filter
    is filled with (``{user}`` there); by default the identity's name.
    """

    groups: tuple[str, ...] = Field(min_length=1)
    existing_account: AccountMapping = PLACEHOLDER

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # One spelling per DN (policy/dn.py): the broker counts holders per item string.
        canonical: list[str] = []
        for dn in value:
            if not dn.strip() or "=" not in dn or not _ACCOUNT.match(dn):
                raise ValueError(f"{dn!r} is not a group DN")
            canonical.append(canonical_dn(dn))
        if len(set(canonical)) != len(canonical):
            raise ValueError("a group is named twice")
        return tuple(canonical)


class LdapSearch(_Strict):
    """Find a user's entry by search: ``filter`` holds ``{user}``, filled in escaped (RFC 4515)."""

    base: str = Field(min_length=3)
    filter: str = Field(min_length=3)

    @field_validator("filter")
    @classmethod
    def _placeholder(cls, value: str) -> str:
        if PLACEHOLDER not in value:
            raise ValueError("user_search.filter needs the {user} placeholder")
        return value
