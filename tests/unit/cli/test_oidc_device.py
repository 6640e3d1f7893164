"""The device flow's polling (RFC 8628 §3.4-3.5) on a frozen clock: the interval is honoured and
grows on ``slow_down``; pending goes on; denial, expiry and the code's lifetime end it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from jitgate import errors
from jitgate.cli.oidc_client import TokenError
from jitgate.cli.oidc_device import DeviceCode, poll
from jitgate.clock import FrozenClock

TOKENS = {"id_token": "eyJ.x.y"}


def code(expires_in: int = 600, interval: int = 5) -> DeviceCode:
    return DeviceCode("dc", "ABCD-EFGH", "https://idp.example/device", None, expires_in, interval)


class Provider:
    """The token endpoint's answers in turn (an error code, or tokens), with the time of each poll."""

    def __init__(self, clock: FrozenClock, answers: list[str | dict[str, Any]]) -> None:
        self.clock = clock
        self.answers: Iterator[str | dict[str, Any]] = iter(answers)
        self.polled_at: list[float] = []
        self.start = clock.now()

    def ask(self) -> Any:
        self.polled_at.append((self.clock.now() - self.start).total_seconds())
        answer = next(self.answers)
        if isinstance(answer, str):
            raise TokenError(answer, "as the provider says")
        return answer


def sleeper(clock: FrozenClock) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    return sleep


def test_pending_polls_go_on_at_the_interval_until_the_tokens_come() -> None:
    clock = FrozenClock()
    provider = Provider(clock, ["authorization_pending", "authorization_pending", TOKENS])
    assert poll(code(interval=3), provider.ask, clock=clock, sleep=sleeper(clock)) == TOKENS
    assert provider.polled_at == [3, 6, 9]


def test_slow_down_adds_five_seconds_to_every_later_interval() -> None:
    clock = FrozenClock()
    provider = Provider(clock, ["slow_down", "authorization_pending", "slow_down", TOKENS])
    poll(code(interval=5), provider.ask, clock=clock, sleep=sleeper(clock))
    assert provider.polled_at == [5, 15, 25, 40]


def test_the_interval_never_grows_past_a_minute() -> None:
    clock = FrozenClock()
    provider = Provider(clock, ["slow_down"] * 12 + [TOKENS])
    poll(code(expires_in=3600, interval=5), provider.ask, clock=clock, sleep=sleeper(clock))
    gaps = [b - a for a, b in zip(provider.polled_at, provider.polled_at[1:], strict=False)]
    assert max(gaps) == 60


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("access_denied", "the sign-in was refused at the identity provider"),
        ("expired_token", "the sign-in code expired before the sign-in was finished"),
        ("invalid_client", "the identity provider refused the sign-in: invalid_client: as the provider says"),
    ],
)
def test_a_final_answer_ends_the_polling_with_one_line(error: str, message: str) -> None:
    clock = FrozenClock()
    provider = Provider(clock, ["authorization_pending", error, TOKENS])
    with pytest.raises(errors.Unauthenticated) as raised:
        poll(code(), provider.ask, clock=clock, sleep=sleeper(clock))
    assert raised.value.message == message
    assert len(provider.polled_at) == 2


def test_polling_stops_once_the_code_has_expired_even_if_the_provider_never_says_so() -> None:
    clock = FrozenClock()
    provider = Provider(clock, ["authorization_pending"] * 100)
    with pytest.raises(errors.Unauthenticated, match="expired"):
        poll(code(expires_in=30, interval=5), provider.ask, clock=clock, sleep=sleeper(clock))
    assert provider.polled_at == [5, 10, 15, 20, 25]


def test_the_provider_s_answer_is_read_with_the_rfc_default_interval() -> None:
    answer = {
        "device_code": "dc",
        "user_code": "ABCD-EFGH",
        "verification_uri": "https://idp.example/device",
        "verification_uri_complete": "https://idp.example/device?user_code=ABCD-EFGH",
        "expires_in": 600,
    }
    assert DeviceCode.from_answer(answer).interval == 5
    assert DeviceCode.from_answer({**answer, "interval": 0}).interval == 1
    assert DeviceCode.from_answer({**answer, "interval": "soon"}).interval == 5
    with pytest.raises(errors.InvalidInput, match="not https"):
        DeviceCode.from_answer({**answer, "verification_uri": "http://idp.example/device"})
    with pytest.raises(errors.InvalidInput, match="lifetime"):
        DeviceCode.from_answer({**answer, "expires_in": None})
