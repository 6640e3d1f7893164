"""A small HTTP client for the broker's API: every error response becomes the matching
``JitgateError`` with the server's one-line detail (``cli/brokerhttp.py`` does the exchange)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jitgate import errors
from jitgate.cli.brokerhttp import Reply, exchange
from jitgate.cli.config import login_file, resolve, save_login

__all__ = ["ApiClient", "login_file", "resolve", "save_login"]


class ApiClient:
    def __init__(self, url: str, token: str | None, *, timeout: float = 30.0) -> None:
        self.url = url
        self._token = token
        self._timeout = timeout

    def close(self) -> None:
        """Nothing stays open between requests; kept so that callers need not know."""

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.raw(method, path, **kwargs)
        if response.headers.get("content-type", "").startswith("application/octet-stream"):
            return response.content
        return self._json(response) if response.content else None

    def raw(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Reply:
        return exchange(
            self.url, self._token, method, path, params=params, json_body=json, timeout=self._timeout
        )

    def pages(self, path: str, params: dict[str, Any], *, at_most: int | None = None) -> Iterator[Any]:
        """Every item of a paged list, following the ``Link: rel="next"`` pages; ``at_most`` stops early."""
        page_size = 500 if at_most is None else max(1, min(at_most, 500))
        response = self.raw("GET", path, params={**params, "limit": page_size})
        given = 0
        while True:
            for item in self._json(response):
                if at_most is not None and given >= at_most:
                    return
                given += 1
                yield item
            following = response.links.get("next", {}).get("url")
            if not following or (at_most is not None and given >= at_most):
                return
            response = self.raw("GET", following)

    def _json(self, response: Reply) -> Any:
        """The answer's JSON; a page that is not (a proxy's, a portal's: not the broker) is one line."""
        try:
            return response.json()
        except ValueError:  # includes a body that is not UTF-8
            raise errors.StorageUnavailable(
                f"the answer from {self.url} is not the broker's JSON; is it the broker's address?"
            ) from None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.call("POST", path, json=body or {}, **kwargs)
