"""The gateway's user name says where to go: ``LOGIN@TARGET`` or ``TARGET``, never anything else."""

from __future__ import annotations

import pytest

from jitgate.errors import InvalidInput
from jitgate.gateway.addressing import Address, choose_login, parse


def test_login_and_target_or_the_target_alone() -> None:
    assert parse("deploy@web-1") == Address(target="web-1", login="deploy")
    assert parse("web-1") == Address(target="web-1", login=None)


@pytest.mark.parametrize(
    "name",
    ["a@b@web-1", "@web-1", "deploy@", "", "Deploy@web-1", "deploy@WEB-1", "deploy@web 1",
     "deploy@../etc", "deploy\n@web-1", "x" * 40 + "@web-1", "deploy@" + "w" * 70],
)  # fmt: skip
def test_anything_else_is_refused_with_one_line(name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse(name)
    assert "\n" not in refused.value.message


def test_the_login_must_be_the_roles_and_is_implied_only_when_there_is_one() -> None:
    assert choose_login(Address("web-1", "ops"), ("deploy", "ops"), "shell") == "ops"
    assert choose_login(Address("web-1", None), ("deploy",), "shell") == "deploy"
    with pytest.raises(InvalidInput, match=r"login root is not one of role shell's logins \(deploy, ops\)"):
        choose_login(Address("web-1", "root"), ("deploy", "ops"), "shell")
    with pytest.raises(
        InvalidInput, match=r"has several logins \(deploy, ops\): connect as LOGIN@web-1@GATEWAY"
    ):
        choose_login(Address("web-1", None), ("deploy", "ops"), "shell")
