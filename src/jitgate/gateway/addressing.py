"""What a gateway user name means: ``LOGIN@TARGET`` or just ``TARGET``.

Plain OpenSSH splits ``ssh deploy@web-1@gateway`` at the last ``@``, so the gateway receives the
user name ``deploy@web-1``. Neither a login nor a target name may contain ``@``
(``domain/sshnames``), so the split is never ambiguous. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from jitgate.domain import sshnames
from jitgate.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Address:
    target: str
    login: str | None


def parse(username: str) -> Address:
    """The target and (if given) login named by a gateway user name; ``InvalidInput`` otherwise."""
    if username.count(sshnames.SEPARATOR) > 1:
        raise InvalidInput("connect as LOGIN@TARGET@GATEWAY or TARGET@GATEWAY")
    login, _, target = username.rpartition(sshnames.SEPARATOR)
    try:
        sshnames.check_target_name(target)
        if login or username.startswith(sshnames.SEPARATOR):
            sshnames.check_login(login)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return Address(target=target, login=login or None)


def choose_login(address: Address, logins: tuple[str, ...], role: str) -> str:
    """The login to use on the target: the one asked for, or the role's only one."""
    if address.login is not None:
        if address.login not in logins:
            raise InvalidInput(
                f"login {address.login} is not one of role {role}'s logins ({', '.join(logins)})"
            )
        return address.login
    if len(logins) == 1:
        return logins[0]
    raise InvalidInput(
        f"role {role} has several logins ({', '.join(logins)}): connect as LOGIN@{address.target}@GATEWAY"
    )
