"""Where the broker's address and token come from, and what its error statuses mean.

Order: ``--url``/``--token`` flags, then ``JITGATE_URL``/``JITGATE_TOKEN``, then the file written by
``jitgate login`` (``~/.config/jitgate/login.json``, mode 0600). Standard library only: the
``jitgate ssh`` fast path imports this before anything heavy.

A login made with ``jitgate login --oidc`` keeps an ID token there with an ``oidc`` section (its
expiry, the refresh token, the provider's endpoints). Once the ID token is within
``REFRESH_MARGIN_SECONDS`` of its end, ``resolve`` hands over to ``cli/oidc_session.py`` to
refresh it first; only then is anything more than the standard library loaded.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from jitgate import errors

STATUS_ERRORS: dict[int, type[errors.JitgateError]] = {
    400: errors.InvalidInput,
    401: errors.Unauthenticated,
    403: errors.PolicyDenied,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.InvalidInput,
    422: errors.InvalidInput,
    429: errors.Unauthenticated,
    502: errors.ProviderError,
    503: errors.StorageUnavailable,
}


REFRESH_MARGIN_SECONDS = 60
"""Refresh an ID token this long before it ends, so that it does not end on the way to the broker."""


def login_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "jitgate" / "login.json"


def save_login(url: str, token: str, oidc: dict[str, Any] | None = None) -> Path:
    """Store the login atomically, mode 0600: a reader sees the old file or the new one, whole."""
    record: dict[str, Any] = {"url": url, "token": token}
    if oidc is not None:
        record["oidc"] = oidc
    path = login_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".login.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_login() -> dict[str, Any]:
    """The stored login, or ``{}`` when there is none (or it cannot be read)."""
    try:
        saved = json.loads(login_file().read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def resolve(url: str | None, token: str | None) -> tuple[str, str | None]:
    saved: dict[str, Any] = {}
    if url is None or token is None:
        saved = read_login()
    final_url = url or os.environ.get("JITGATE_URL") or saved.get("url") or "http://127.0.0.1:8080"
    final_token = token or os.environ.get("JITGATE_TOKEN") or _saved_token(saved)
    return str(final_url).rstrip("/"), final_token


def _saved_token(saved: dict[str, Any]) -> str | None:
    token = saved.get("token")
    if not isinstance(token, str):
        return None
    oidc = saved.get("oidc")
    if not isinstance(oidc, dict):
        return token
    expires_at = oidc.get("expires_at")
    if isinstance(expires_at, int) and expires_at - time.time() > REFRESH_MARGIN_SECONDS:
        return token
    from jitgate.cli.oidc_session import current_token  # only when the ID token is about to end

    return current_token()
