"""Existing MariaDB accounts as a role's ``mariadb.existing_login`` names them, read without a server.

The policy maps an identity to a string (``"{user}"``, ``"{user}@10.%"``, an explicit map), which
is read as an account in one of three forms:

* ``'name'@'host'``: as MariaDB prints accounts; exact, so also for names that hold an ``@``;
* ``name@host``: split at the **last** ``@``, since a host never holds one;
* ``name``: the host is ``%``.

A template is split into name and host *before* the identity's name is filled in
(``account_from_template``): the identity ``bob@localhost`` under ``"{user}"`` is the account
``'bob@localhost'@'%'``, never ``'bob'@'localhost'``, which may be another person's. A map's
accounts are read as written, so ``alice@example.com`` there is ``'alice'@'example.com'``. A
name is 1 to 128 characters without quotes, backslashes, backticks or control characters (the
anonymous account, an empty name, is never elevated); a host is a name, address, netmask or
pattern (letters, digits and ``. % _ : - /``), lowercased as MariaDB stores it.

A template is checked once, when the policy is loaded (``mapping_problems``): ``{user}`` may
stand in the name only, never in the host (an identity must not choose where it is elevated), and
filled in with a plain name the template must read as an account.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from jitgate.errors import ElevationRefused
from jitgate.policy.accounts import PLACEHOLDER

MAX_NAME = 128
HOST = re.compile(r"^[A-Za-z0-9.%_:/-]{1,255}$")
_QUOTED = re.compile(r"^'(?P<user>[^']*)'@'(?P<host>[^']*)'$")
_BAD_NAME = re.compile(r"['\\`\x00-\x1f\x7f]")
_SAMPLE = "alice"


@dataclass(frozen=True, slots=True)
class Account:
    """One MariaDB account; ``str()`` gives the ``'user'@'host'`` form the broker records."""

    user: str
    host: str

    def __str__(self) -> str:
        return f"'{self.user}'@'{self.host}'"

    @property
    def params(self) -> tuple[str, str]:
        """For ``... TO %s@%s``: the driver quotes both parts."""
        return (self.user, self.host)


def split_account(text: str) -> tuple[str, str]:
    """The name and host ``text`` spells, unchecked (the host ``%`` when it names none)."""
    quoted = _QUOTED.fullmatch(text)
    if quoted:
        return quoted["user"], quoted["host"]
    user, at, host = text.rpartition("@")
    return (user, host) if at else (text, "%")


def account_from_template(template: str, identity: str) -> str:
    """The account ``template`` names for ``identity``, as ``'user'@'host'``: the host is the
    template's own, whatever ``@`` the identity's name holds."""
    user, host = split_account(template)
    return str(Account(user.replace(PLACEHOLDER, identity), host))


def account_problem(text: str) -> str | None:
    """Why ``text`` names no MariaDB account jitgate would elevate; None when it does."""
    user, host = split_account(text)
    if not user:
        return f"{text!r} names the anonymous account (an empty user name)"
    if len(user) > MAX_NAME or _BAD_NAME.search(user):
        return (
            f"{text!r}: a user name is 1 to {MAX_NAME} characters without quotes, backslashes, "
            "backticks or control characters"
        )
    if not HOST.fullmatch(host):
        return f"{text!r}: the host must be a host name, address, netmask or pattern"
    return None


def parse_account(text: str, target: str) -> Account:
    """``text`` as an ``Account``; ``ElevationRefused`` (permanent) when it names none."""
    problem = account_problem(text)
    if problem:
        raise ElevationRefused(f"mariadb target {target}: {problem}")
    user, host = split_account(text)
    return Account(user, host.lower())


def mapping_problems(mapping: str | Mapping[str, str]) -> list[str]:
    """What is wrong with an ``existing_login`` template or map, one line each, without a server."""
    if not isinstance(mapping, str):
        return [
            f"account map entry {name!r}: {problem}"
            for name, account in mapping.items()
            if (problem := account_problem(account))
        ]
    problems: list[str] = []
    _, host = split_account(mapping)
    if PLACEHOLDER in host or "{" in host:
        problems.append(f"{mapping!r}: {PLACEHOLDER} may stand in the user name only, never in the host")
    elif problem := account_problem(mapping.replace(PLACEHOLDER, _SAMPLE)):
        problems.append(problem.replace(repr(mapping.replace(PLACEHOLDER, _SAMPLE)), repr(mapping), 1))
    return problems
