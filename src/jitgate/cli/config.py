"""Where the broker's address and token come from, and what its error statuses mean.

Order: ``--url``/``--token`` flags, then ``JITGATE_URL``/``JITGATE_TOKEN``, then the file written by
``jitgate login`` (``~/.config/jitgate/login.json``, mode 0600). Standard library only: the
``jitgate ssh`` fast path imports this before anything heavy.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
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


def login_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "jitgate" / "login.json"


def save_login(url: str, token: str) -> Path:
    path = login_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "token": token}, handle)
    tmp.replace(path)
    return path


def resolve(url: str | None, token: str | None) -> tuple[str, str | None]:
    saved: dict[str, str] = {}
    path = login_file()
    if (url is None or token is None) and path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = {}
    sources = (("--url", url), ("JITGATE_URL", os.environ.get("JITGATE_URL")), (str(path), saved.get("url")))
    source, final_url = next(((s, u) for s, u in sources if u), ("", "http://127.0.0.1:8080"))
    tokens = (
        ("--token", token),
        ("JITGATE_TOKEN", os.environ.get("JITGATE_TOKEN")),
        (str(path), saved.get("token")),
    )
    token_source, final_token = next(((s, t) for s, t in tokens if t), ("", None))
    if final_token is not None:
        check_token(final_token, token_source)
    return broker_url(final_url, source), final_token


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
