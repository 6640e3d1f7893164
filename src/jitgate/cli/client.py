"""A small HTTP client for the broker's API: every error response becomes the matching
``JitgateError`` with the server's one-line detail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from jitgate import errors
from jitgate.cli import stepup
from jitgate.cli.config import STATUS_ERRORS, login_file, resolve, save_login

__all__ = ["ApiClient", "login_file", "resolve", "save_login"]


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
                body = response.json()
                detail = body.get("detail") or response.reason_phrase
            except (ValueError, AttributeError):
                body, detail = None, response.reason_phrase
            step_up = stepup.from_answer(response.headers.get("www-authenticate"), body)
            if response.status_code == 401 and step_up is not None:
                raise step_up
            cls = STATUS_ERRORS.get(response.status_code, errors.JitgateError)
            raise cls(str(detail))
        return response

    def pages(self, path: str, params: dict[str, Any], *, at_most: int | None = None) -> Iterator[Any]:
        """Every item of a paged list, following the ``Link: rel="next"`` pages; ``at_most`` stops early."""
        page_size = 500 if at_most is None else max(1, min(at_most, 500))
        response = self.raw("GET", path, params={**params, "limit": page_size})
        given = 0
        while True:
            for item in response.json():
                if at_most is not None and given >= at_most:
                    return
                given += 1
                yield item
            following = response.links.get("next", {}).get("url")
            if not following or (at_most is not None and given >= at_most):
                return
            response = self.raw("GET", following)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.call("POST", path, json=body or {}, **kwargs)
