"""Where the broker's address and token come from, and what its error statuses mean.

Order: ``--url``/``--token`` flags, then ``JITGATE_URL``/``JITGATE_TOKEN``, then the file written by
``jitgate login`` (``~/.config/jitgate/login.json``, mode 0600). Standard library only: the
``jitgate ssh`` fast path imports this before anything heavy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

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
    final_token = token or os.environ.get("JITGATE_TOKEN") or saved.get("token")
    return broker_url(final_url, source), final_token


def broker_url(text: str, source: str) -> str:
    """``text`` as the broker's base URL, else ``InvalidInput`` naming where it came from."""
    value = text.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        hint = f"; did you mean http://{value}?" if "://" not in value else ""
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise errors.InvalidInput(f"{source}: {shown!r} is not an http:// or https:// URL{hint}")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise errors.InvalidInput(f"{source}: {value!r} has a port that is not a number") from None
    return value
