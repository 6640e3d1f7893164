"""A small HTTP client for the broker's API, and where its address and token come from.

Order: ``--url``/``--token`` flags, then ``JITGATE_URL``/``JITGATE_TOKEN``, then the file written by
``jitgate login`` (``~/.config/jitgate/login.json``, mode 0600). Every error response becomes the
matching ``JitgateError`` with the server's one-line detail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from jitgate import errors

STATUS_ERRORS: dict[int, type[errors.JitgateError]] = {
    400: errors.InvalidInput,
    401: errors.Unauthenticated,
    403: errors.PolicyDenied,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.InvalidInput,
    422: errors.InvalidInput,
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
    final_url = url or os.environ.get("JITGATE_URL") or saved.get("url") or "http://127.0.0.1:8080"
    final_token = token or os.environ.get("JITGATE_TOKEN") or saved.get("token")
    return final_url.rstrip("/"), final_token


class ApiClient:
    def __init__(self, url: str, token: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.raw(method, path, **kwargs)
        if response.headers.get("content-type", "").startswith("application/octet-stream"):
            return response.content
        return response.json() if response.content else None

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise errors.StorageUnavailable(f"cannot reach the broker at {self.url}") from None
        except httpx.TimeoutException:
            raise errors.StorageUnavailable(f"the broker at {self.url} did not answer in time") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail") or response.reason_phrase
            except ValueError:
                detail = response.reason_phrase
            cls = STATUS_ERRORS.get(response.status_code, errors.JitgateError)
            raise cls(str(detail))
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.call("POST", path, json=body or {}, **kwargs)
