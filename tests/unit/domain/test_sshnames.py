"""Principals name one login on one target, and nothing that could split or extend an ssh line."""

import pytest

from jitgate.domain.sshnames import check_address, login_of, principal


def test_a_principal_is_login_at_target_and_reads_back_only_for_that_target() -> None:
    assert principal("deploy", "web-1") == "deploy@web-1"
    assert login_of("deploy@web-1", "web-1") == "deploy"
    for other in ("web-2", "web-1.example.com", "web"):
        with pytest.raises(ValueError, match="not bound to target"):
            login_of("deploy@web-1", other)


@pytest.mark.parametrize(("login", "target"), [("de@ploy", "web-1"), ("deploy", "web@1"), ("", "web-1")])
def test_neither_half_can_hold_the_separator(login: str, target: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        principal(login, target)


@pytest.mark.parametrize(
    "address", ["256.1.1.1", "01.2.3.4", "1.2.3", "1..2", "fe80::1%eth0", "a\nb", "x" * 254]
)
def test_addresses_that_are_neither_a_host_name_nor_an_ip_literal(address: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        check_address(address)
