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

import errno
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jitgate import errors

_BEARER = re.compile(r"[A-Za-z0-9._~+/-]+=*")
"""What RFC 6750 allows in a bearer token: anything else could not be sent in a header."""
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+")
"""A host name, an IPv4 address, or an IPv6 address as ``urlsplit`` gives it (no brackets)."""

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
    import tempfile  # here: every command reads this module, few write the login

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
    """The stored login, or ``{}`` when there is none (or it cannot be read).

    A login file that someone else could have written (a symbolic link, another owner, writable by
    group or others: a shared configuration directory) is refused, not believed: it names the
    broker every command talks to and the credential it presents.
    """
    path = login_file()
    try:
        # Non-blocking: a FIFO planted in its place must not hold the command until someone writes.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise errors.InvalidInput(f"{path}: is a symbolic link; delete it and sign in again") from None
        return {}
    with os.fdopen(fd) as handle:
        mine = os.fstat(handle.fileno())
        foreign = mine.st_uid != os.geteuid() or not stat.S_ISREG(mine.st_mode)
        if foreign or mine.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise errors.InvalidInput(
                f"{path}: not a private file (another owner, writable by others, or not a file); "
                "delete it and sign in again"
            )
        try:
            saved = json.loads(handle.read())
        except (OSError, ValueError):
            return {}
    return saved if isinstance(saved, dict) else {}


def resolve(url: str | None, token: str | None) -> tuple[str, str | None]:
    saved: dict[str, Any] = {}
    path = login_file()
    if url is None or token is None:
        saved = read_login()
    sources = (("--url", url), ("JITGATE_URL", os.environ.get("JITGATE_URL")), (str(path), saved.get("url")))
    source, final_url = next(((s, u) for s, u in sources if u), ("", "http://127.0.0.1:8080"))
    tokens = (
        ("--token", token),
        ("JITGATE_TOKEN", os.environ.get("JITGATE_TOKEN")),
        (str(path), _saved_token(saved) if not (token or os.environ.get("JITGATE_TOKEN")) else None),
    )
    token_source, final_token = next(((s, t) for s, t in tokens if t), ("", None))
    if final_token is not None:
        check_token(final_token, token_source)
    return broker_url(final_url, source), final_token


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


def check_token(token: str, source: str) -> str:
    """``token`` if it can be sent as a bearer token, else ``InvalidInput`` naming ``source``."""
    if not _BEARER.fullmatch(token):
        # Never echoed: it may be a real token with a stray character pasted around it.
        raise errors.InvalidInput(
            f"{source}: not a token (it holds a space, a line break or a character outside ASCII)"
        )
    return token


def broker_url(text: str, source: str) -> str:
    """``text`` as the broker's base URL, else ``InvalidInput`` naming where it came from."""
    value = text.strip().rstrip("/")
    shown = value if len(value) <= 80 else value[:77] + "..."
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:  # an unclosed [IPv6 address, a port that is not a number
        what = "has a port that is not a number" if "port" in str(exc).lower() else "is not a URL"
        raise errors.InvalidInput(f"{source}: {shown!r} {what}") from None
    if (
        parts.scheme not in {"http", "https"}
        or not _HOST.fullmatch(parts.hostname or "")
        or "@" in parts.netloc
    ):
        hint = f"; did you mean http://{value}?" if "://" not in value and " " not in value else ""
        raise errors.InvalidInput(f"{source}: {shown!r} is not an http:// or https:// URL{hint}")
    return value
