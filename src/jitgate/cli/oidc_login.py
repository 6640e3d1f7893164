"""``jitgate login --oidc`` and ``jitgate logout``: signing in at the broker's identity provider.

The broker says which provider and client to use (``GET /api/v1/auth/oidc``); the provider's
discovery document must name the same issuer. The person signs in by the device authorization
grant (a code to confirm in any browser) when the provider offers it to this client, else through
a browser on this machine (a loopback redirect); ``--device`` and ``--browser`` choose. The ID
token is checked (signature, issuer, audience, nonce), shown to the broker (``whoami``) and only
then stored, with the refresh token, in the login file (0600). Tokens are never printed.

Everything past the options loads when a sign-in runs: other commands do not pay for it.

The ID token is what the CLI presents to the broker, as kubectl's OIDC plugin does: its audience
is the CLI's client id, which the broker trusts, and any provider issues it as a JWT (access
tokens are often opaque).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jitgate import errors
from jitgate.cli.output import err, fail, say

if TYPE_CHECKING:
    from jitgate.cli.oidc_client import ProviderMetadata

OidcOpt = Annotated[bool, typer.Option("--oidc", help="Sign in at the broker's identity provider")]
DeviceOpt = Annotated[bool, typer.Option("--device", help="With --oidc: confirm a code in any browser")]
BrowserOpt = Annotated[bool, typer.Option("--browser", help="With --oidc: sign in with a browser here")]
MaxAgeOpt = Annotated[
    int | None,
    typer.Option(
        "--max-age",
        min=0,
        metavar="SECONDS",
        help="With --oidc: sign in again if the last was longer ago (s)",
    ),
]
AcrOpt = Annotated[
    str | None,
    typer.Option("--acr", metavar="ACR", help="With --oidc: the sign-in strength to ask for (acr)"),
]
ForgetOpt = Annotated[bool, typer.Option("--forget", help="Delete the stored login (like jitgate logout)")]


def register(app: typer.Typer) -> None:
    @app.command()
    def logout() -> None:
        """Delete the stored login; an OpenID sign-in's refresh token is revoked at the provider."""
        logout_now()


def check_options(oidc: bool, *, device: bool, browser: bool, max_age: int | None, acr: str | None) -> None:
    """The sign-in options mean nothing without ``--oidc``: refused, not ignored."""
    named = {"--device": device or None, "--browser": browser or None, "--max-age": max_age, "--acr": acr}
    given = [name for name, value in named.items() if value is not None]
    if given and not oidc:
        raise typer.BadParameter(f"{given[0]} needs --oidc", param_hint=given[0])
    if device and browser:
        raise typer.BadParameter("--device and --browser exclude each other", param_hint="--device")


def logout_now() -> None:
    from jitgate.cli.oidc_session import forget

    try:
        notes = forget()
    except errors.JitgateError as exc:
        fail(exc)
    for note in notes:
        say(f"warning: {note}", err)
    say("logged out; the stored login is deleted")


def login_now(url: str, *, device: bool, browser: bool, max_age: int | None, acr: str | None) -> None:
    """Sign in as the broker at ``url`` asks, check the result and store it; errors end the program."""
    try:
        path, name = _sign_in(url, device=device, browser=browser, max_age=max_age, acr=acr)
    except errors.JitgateError as exc:
        fail(exc)
    say(f"logged in to {url} as {name}; saved to {path}")


def _sign_in(
    url: str, *, device: bool, browser: bool, max_age: int | None, acr: str | None
) -> tuple[Path, str]:
    from jitgate.cli.client import ApiClient, save_login
    from jitgate.cli.oidc_client import ProviderMetadata, checked_id_token, id_token_of, refresh_token_of
    from jitgate.cli.oidc_device import DeviceFlowRefused
    from jitgate.cli.oidc_session import oidc_record

    issuer, client_id, scopes = _broker_says(url)
    metadata = ProviderMetadata.discover(issuer)
    params = {"client_id": client_id, "scope": " ".join(scopes)}
    if max_age is not None:
        params["max_age"] = str(max_age)
    if acr:
        params["acr_values"] = acr
    nonce: str | None = None
    asked_at = time.time()
    if device or (not browser and metadata.device_authorization_endpoint is not None):
        try:
            answer = _device_sign_in(metadata, client_id, params)
        except DeviceFlowRefused as refused:
            if device:
                raise
            say(f"{refused.message}; signing in with a browser instead", err)
            answer, nonce = _browser_sign_in(metadata, client_id, params)
    else:
        answer, nonce = _browser_sign_in(metadata, client_id, params)
    id_token = id_token_of(answer)
    claims = checked_id_token(
        id_token, issuer=issuer, client_id=client_id, jwks_uri=metadata.jwks_uri, nonce=nonce
    )
    _check_fresh(claims, max_age, asked_at)
    broker = ApiClient(url, id_token)
    try:
        me = broker.get("/api/v1/whoami")
    finally:
        broker.close()
    record = oidc_record(
        claims=claims,
        client_id=client_id,
        token_endpoint=metadata.token_endpoint,
        jwks_uri=metadata.jwks_uri,
        revocation_endpoint=metadata.revocation_endpoint,
        refresh_token=refresh_token_of(answer),
    )
    return save_login(url, id_token, oidc=record), str(me.get("name"))


def _broker_says(url: str) -> tuple[str, str, list[str]]:
    from jitgate.cli.client import ApiClient

    client = ApiClient(url, None)
    try:
        info = client.get("/api/v1/auth/oidc")
    except errors.NotFound:
        raise errors.NotFound(
            f"the broker at {url} offers no OpenID sign-in; use jitgate login with an API token"
        ) from None
    finally:
        client.close()
    issuer, client_id = info.get("issuer"), info.get("client_id")
    scopes = info.get("scopes") or ["openid"]
    if not isinstance(issuer, str) or not isinstance(client_id, str) or not isinstance(scopes, list):
        raise errors.InvalidInput("the broker's OpenID settings are incomplete")
    return issuer, client_id, [str(s) for s in scopes]


def _device_sign_in(metadata: ProviderMetadata, client_id: str, params: dict[str, str]) -> Any:
    from jitgate.cli import oidc_device
    from jitgate.cli.oidc_client import post_form
    from jitgate.clock import SystemClock

    endpoint = metadata.device_authorization_endpoint
    if endpoint is None:
        raise errors.InvalidInput("the identity provider offers no device sign-in; use --browser")
    code = oidc_device.start(endpoint, params)
    say(f"To sign in, open {code.verification_uri} and enter the code {code.user_code}", err)
    if code.verification_uri_complete:
        say(f"or open {code.verification_uri_complete}", err)
    say("Waiting for the sign-in to finish...", err)
    form = oidc_device.token_form(code, client_id)
    return oidc_device.poll(
        code, lambda: post_form(metadata.token_endpoint, form), clock=SystemClock(), sleep=time.sleep
    )


def _browser_sign_in(metadata: ProviderMetadata, client_id: str, params: dict[str, str]) -> tuple[Any, str]:
    from jitgate.cli import oidc_loopback
    from jitgate.cli.oidc_client import TokenError, post_form

    endpoint = metadata.authorization_endpoint
    if endpoint is None:
        raise errors.InvalidInput("the identity provider offers no browser sign-in; use --device")
    if "offline_access" in params["scope"].split():
        params = {**params, "prompt": "consent"}  # OIDC Core §11: offline access needs consent

    def exchange(request: oidc_loopback.LoopbackRequest, code: str, redirect_uri: str) -> Any:
        try:
            return post_form(metadata.token_endpoint, request.token_form(code, redirect_uri, client_id))
        except TokenError as exc:
            raise errors.Unauthenticated(f"the identity provider refused the sign-in's code: {exc}") from None

    answer, request = oidc_loopback.sign_in(
        endpoint=endpoint, issuer=metadata.issuer, params=params, show=_show_address, exchange=exchange
    )
    return answer, request.nonce


def _show_address(address: str) -> None:
    say("Open this address in a browser to sign in:", err)
    say(f"  {address}", err)
    graphical = any(os.environ.get(v) for v in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY"))
    if graphical or sys.platform in {"darwin", "win32"}:
        import webbrowser

        with contextlib.suppress(webbrowser.Error):
            webbrowser.open(address)
    say("Waiting for the browser to come back...", err)


def _check_fresh(claims: dict[str, Any], max_age: int | None, asked_at: float) -> None:
    """With ``max_age``, the person must have signed in no longer than that before the CLI asked
    (OIDC Core §3.1.2.1: the provider may have reused an older sign-in otherwise)."""
    from jitgate.cli.oidc_client import LEEWAY_SECONDS

    if max_age is None:
        return
    auth_time = claims.get("auth_time")
    if not isinstance(auth_time, int) or auth_time < asked_at - max_age - LEEWAY_SECONDS:
        raise errors.Unauthenticated("the identity provider did not sign you in again as --max-age asks")
