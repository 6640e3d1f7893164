"""What may reach an ssh_config line, an ``ssh`` argument or a certificate principal.

Target names, host addresses, ports and logins end up in text that OpenSSH parses again: a newline
in an address printed by ``jitgate ssh-config`` would start a new configuration line (a
``ProxyCommand`` that runs on the user's machine), a space or comma in a known_hosts pattern adds
hosts, a leading ``-`` turns a value into an option. The policy loader refuses anything outside
these shapes, and the client checks again what the broker sends before it writes an ssh_config or
builds an ``ssh`` command line. Standard library only: the ``jitgate ssh`` fast path imports it.

A certificate is bound to its target by its principals, ``LOGIN@TARGET``: neither a login nor a
target name can hold an ``@``, so a principal names exactly one login on exactly one target.
"""

from __future__ import annotations

import re

SEPARATOR = "@"
_TARGET_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_LOGIN = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_ADDRESS_CHARACTERS = re.compile(r"[A-Za-z0-9_.:-]{1,253}")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _shown(value: object) -> str:
    return repr(value[:70]) if isinstance(value, str) else type(value).__name__


def check_target_name(value: object) -> str:
    """A target name: lower-case letters, digits, ``_ . -``, starting with a letter or digit."""
    if not isinstance(value, str) or not _TARGET_NAME.fullmatch(value):
        raise ValueError(
            f"{_shown(value)} is not a target name (a-z, 0-9, '_', '.', '-'; starts with a-z or 0-9; "
            "at most 63)"
        )
    return value


def check_login(value: object) -> str:
    """A conservative POSIX user name: ``[a-z_][a-z0-9_.-]*``, at most 32 characters."""
    if not isinstance(value, str) or not _LOGIN.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a valid login name")
    return value


def check_address(value: object) -> str:
    """A host name (letters, digits, ``-``, ``_`` in dot-separated labels) or an IP address literal.

    No whitespace, control characters, quotes, ``%`` (ssh expands it; it also starts an IPv6 zone),
    ``,`` or ``*`` (known_hosts patterns), brackets, or a leading ``-``.
    """
    if not isinstance(value, str) or not _ADDRESS_CHARACTERS.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a host name or IP address")
    if ":" in value:
        import ipaddress  # here: the ``jitgate ssh`` fast path rarely meets IPv6 and pays for imports

        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise ValueError(f"{_shown(value)} is not a valid IPv6 address") from None
        return value
    labels = value.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{_shown(value)} is not a host name or IP address")
    if labels[-1].isdigit() and not _IPV4.fullmatch(value):
        # all-numeric: it must be an IPv4 address (dotted quad), not something resolvers guess at
        raise ValueError(f"{_shown(value)} is not a valid IPv4 address")
    return value


def check_port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{_shown(value)} is not a port (1-65535)")
    return value


def principal(login: str, target: str) -> str:
    """The certificate principal that lets ``login`` in on ``target`` and nowhere else."""
    return f"{check_login(login)}{SEPARATOR}{check_target_name(target)}"


def login_of(bound: str, target: str) -> str:
    """The login in principal ``bound``, which must be bound to ``target``."""
    login, separator, where = bound.partition(SEPARATOR)
    if not separator or where != target:
        raise ValueError(f"principal {_shown(bound)} is not bound to target {target}")
    return check_login(login)
