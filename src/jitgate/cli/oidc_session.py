"""A stored OpenID sign-in over its life: refreshed before its ID token ends, ended on logout.

``current_token`` runs when ``config.resolve`` finds the stored ID token within
``REFRESH_MARGIN_SECONDS`` of its end. Under a lock on the login file it reads the login again
(another ``jitgate`` may have refreshed it meanwhile), trades the refresh token for a new ID
token, checks that token like the first, and stores it with the refresh token the provider
rotated in, atomically and 0600. A refresh the provider refuses ends the sign-in: one line
saying to sign in again, and the not-authenticated exit code.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jitgate import errors
from jitgate.cli.config import REFRESH_MARGIN_SECONDS, login_file, read_login, save_login
from jitgate.cli.oidc_client import (
    TokenError,
    checked_endpoint,
    checked_id_token,
    id_token_of,
    post_form,
    refresh_token_of,
)

ENDED = "your sign-in has ended; run jitgate login --oidc"


def oidc_record(
    *,
    claims: dict[str, Any],
    client_id: str,
    token_endpoint: str,
    jwks_uri: str,
    revocation_endpoint: str | None,
    refresh_token: str | None,
) -> dict[str, Any]:
    """The ``oidc`` section of the login file for an ID token with ``claims``."""
    record: dict[str, Any] = {
        "issuer": claims["iss"],
        "client_id": client_id,
        "subject": claims["sub"],
        "expires_at": int(claims["exp"]),
        "token_endpoint": token_endpoint,
        "jwks_uri": jwks_uri,
    }
    if revocation_endpoint:
        record["revocation_endpoint"] = revocation_endpoint
    if refresh_token:
        record["refresh_token"] = refresh_token
    return record


@contextmanager
def login_lock() -> Iterator[None]:
    """Held while the login file is read, refreshed and written, so refreshes never race."""
    path = login_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Never through a symbolic link: one planted in a shared directory would have this create or
    # lock a file of the attacker's choosing.
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        lock = os.open(path.with_name(path.name + ".lock"), flags, 0o600)
    except OSError as exc:
        raise errors.InvalidInput(f"{path}.lock: cannot be opened ({exc.strerror})") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)  # closing releases the lock


def current_token(now: float | None = None) -> str:
    """The stored ID token, refreshed first when it ends within the margin; else ``Unauthenticated``."""
    with login_lock():
        saved = read_login()
        token, oidc = saved.get("token"), saved.get("oidc")
        if not isinstance(token, str) or not isinstance(oidc, dict):
            raise errors.Unauthenticated(ENDED)
        moment = time.time() if now is None else now
        expires_at = oidc.get("expires_at")
        left = expires_at - moment if isinstance(expires_at, int) else 0
        if left > REFRESH_MARGIN_SECONDS:
            return token  # refreshed by another process while this one waited for the lock
        refresh = oidc.get("refresh_token")
        if not isinstance(refresh, str):
            if left > 0:
                return token
            raise errors.Unauthenticated(ENDED)
        try:
            return _refresh(saved, oidc, refresh)
        except errors.StorageUnavailable:
            if left > 0:
                return token  # the provider is unreachable, but the token still holds for now
            raise


def _refresh(saved: dict[str, Any], oidc: dict[str, Any], refresh: str) -> str:
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": str(oidc.get("client_id"))}
    try:
        answer = post_form(checked_endpoint(oidc.get("token_endpoint"), "token_endpoint"), form)
    except TokenError:
        raise errors.Unauthenticated(ENDED) from None
    try:
        id_token = id_token_of(answer)
        claims = checked_id_token(
            id_token,
            issuer=str(oidc.get("issuer")),
            client_id=str(oidc.get("client_id")),
            jwks_uri=str(oidc.get("jwks_uri")),
            subject=str(oidc.get("subject")),
        )
    except errors.Unauthenticated:
        raise errors.Unauthenticated(ENDED) from None
    updated = {
        **oidc,
        "expires_at": int(claims["exp"]),
        "refresh_token": refresh_token_of(answer) or refresh,
    }
    save_login(str(saved.get("url")), id_token, oidc=updated)
    return id_token


def forget() -> list[str]:
    """Delete the stored login; for an OpenID sign-in, revoke its refresh token at the provider first.

    The login is deleted even when the revocation fails; the returned lines say what was not done.
    """
    notes: list[str] = []
    with login_lock():
        saved = read_login()
        oidc = saved.get("oidc")
        try:
            if isinstance(oidc, dict) and isinstance(oidc.get("refresh_token"), str):
                notes += _revoke(oidc)
        finally:
            login_file().unlink(missing_ok=True)
    return notes


def _revoke(oidc: dict[str, Any]) -> list[str]:
    endpoint = oidc.get("revocation_endpoint")
    if not isinstance(endpoint, str):
        return ["the identity provider offers no revocation; the refresh token ends when it expires"]
    form = {
        "token": str(oidc["refresh_token"]),
        "token_type_hint": "refresh_token",
        "client_id": str(oidc.get("client_id")),
    }
    try:
        post_form(endpoint, form)
    except (TokenError, errors.StorageUnavailable) as exc:
        return [f"could not revoke the refresh token at the identity provider: {exc}"]
    return []
