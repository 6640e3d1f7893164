"""Signing in on another device (RFC 8628, the device authorization grant): the CLI shows a code
and an address, the person confirms the code in any browser, and the CLI polls the token endpoint.

Polling honours the provider: every ``interval`` seconds (5 when it does not say), five seconds
slower after each ``slow_down``, until ``authorization_pending`` ends in tokens, ``access_denied``
or ``expired_token``, or the code's ``expires_in`` has passed. The clock and the sleep are
handed in, so that the schedule is tested without waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from jitgate import errors
from jitgate.cli.oidc_client import TokenError, checked_endpoint, post_form
from jitgate.clock import Clock

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5
SLOW_DOWN_STEP = 5
MAX_INTERVAL = 60


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """The provider's answer at the device authorization endpoint (RFC 8628 §3.2)."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int

    @classmethod
    def from_answer(cls, answer: Any) -> DeviceCode:
        if not isinstance(answer, dict):
            raise errors.InvalidInput("the identity provider's device authorization answer is not an object")
        device_code, user_code = answer.get("device_code"), answer.get("user_code")
        expires_in, interval = answer.get("expires_in"), answer.get("interval", DEFAULT_INTERVAL)
        if not isinstance(device_code, str) or not isinstance(user_code, str) or not user_code:
            raise errors.InvalidInput("the identity provider gave no device or user code")
        if not isinstance(expires_in, int) or expires_in <= 0:
            raise errors.InvalidInput("the identity provider gave no lifetime for the device code")
        complete = answer.get("verification_uri_complete")
        return cls(
            device_code=device_code,
            user_code=user_code,
            verification_uri=checked_endpoint(answer.get("verification_uri"), "verification_uri"),
            verification_uri_complete=None
            if complete is None
            else checked_endpoint(complete, "verification_uri"),
            expires_in=expires_in,
            interval=min(max(interval, 1), MAX_INTERVAL) if isinstance(interval, int) else DEFAULT_INTERVAL,
        )


class DeviceFlowRefused(errors.Unauthenticated):
    """The provider would not start a device sign-in for this client (not allowed to it, mostly)."""


def start(endpoint: str, form: dict[str, str]) -> DeviceCode:
    """Ask for a device code (``form``: client_id, scope and any max_age / acr_values)."""
    try:
        return DeviceCode.from_answer(post_form(endpoint, form))
    except TokenError as exc:
        raise DeviceFlowRefused(f"the identity provider refused to start a device sign-in: {exc}") from None


def poll(
    code: DeviceCode,
    ask: Callable[[], Any],
    *,
    clock: Clock,
    sleep: Callable[[float], None],
) -> Any:
    """Poll with ``ask`` (one token request; raises ``TokenError`` for an OAuth error) until the
    person has signed in; the token endpoint's answer. Ends with ``Unauthenticated`` otherwise."""
    interval = code.interval
    deadline = clock.now() + timedelta(seconds=code.expires_in)
    while True:
        sleep(interval)
        if clock.now() >= deadline:
            raise errors.Unauthenticated("the sign-in code expired before the sign-in was finished")
        try:
            return ask()
        except TokenError as exc:
            if exc.error == "authorization_pending":
                continue
            if exc.error == "slow_down":
                interval = min(interval + SLOW_DOWN_STEP, MAX_INTERVAL)
                continue
            if exc.error == "expired_token":
                raise errors.Unauthenticated(
                    "the sign-in code expired before the sign-in was finished"
                ) from None
            if exc.error == "access_denied":
                raise errors.Unauthenticated("the sign-in was refused at the identity provider") from None
            raise errors.Unauthenticated(f"the identity provider refused the sign-in: {exc}") from None


def token_form(code: DeviceCode, client_id: str) -> dict[str, str]:
    return {"grant_type": GRANT_TYPE, "device_code": code.device_code, "client_id": client_id}
