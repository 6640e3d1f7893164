"""One HTTP exchange with the broker's API, on the standard library alone.

The command line talks to one server with JSON and bearer tokens: ``http.client`` covers that,
and it is loaded in a fraction of the time an HTTP client library with its own command line,
proxy discovery and async transport takes at the start of every command. TLS is verified against
the system's trust store (``SSL_CERT_FILE``/``SSL_CERT_DIR`` are honoured). Proxies are not used:
the broker is reached directly.

Every transport failure becomes ``StorageUnavailable`` ("cannot reach the broker") and every error
status the matching ``JitgateError`` with the server's one-line ``detail``.
"""

from __future__ import annotations

import http.client
import json
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

from jitgate import errors
from jitgate.cli.config import STATUS_ERRORS

_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([^",;]+)"?')


class Reply:
    """A response read in full: status, headers and body."""

    def __init__(self, status: int, reason: str, headers: http.client.HTTPMessage, content: bytes) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def links(self) -> dict[str, dict[str, str]]:
        """The RFC 8288 ``Link`` header by relation, as ``{"next": {"url": ...}}``."""
        found: dict[str, dict[str, str]] = {}
        for value in self.headers.get_all("Link") or []:
            for url, rel in _LINK.findall(value):
                found.setdefault(rel, {"url": url})
        return found


def query_string(params: dict[str, Any] | None) -> str:
    """``params`` as a query: a list repeats its key, ``True``/``False`` are ``true``/``false``, ``None``
    is left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None:
                pairs.append((key, str(item).lower() if isinstance(item, bool) else str(item)))
    return urlencode(pairs)


def exchange(
    base_url: str,
    token: str | None,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    json_body: Any = None,
    timeout: float = 30,
) -> Reply:
    """Send one request to ``base_url`` + ``path`` (a path and query from the broker is fine too).

    An error status raises the matching ``JitgateError``; the reply of any other status is returned.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise errors.InvalidInput(f"broker URL {base_url!r} is not http(s)://HOST[:PORT]")
    target = parts.path.rstrip("/") + path
    query = query_string(params)
    if query:
        target += ("&" if "?" in target else "?") + query
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = None
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        reply = Reply(response.status, response.reason, response.msg, response.read())
    except TimeoutError:
        raise errors.StorageUnavailable(f"the broker at {base_url} did not answer in time") from None
    except (OSError, http.client.HTTPException):
        raise errors.StorageUnavailable(f"cannot reach the broker at {base_url}") from None
    finally:
        connection.close()
    if reply.status_code >= 400:
        try:
            detail = reply.json().get("detail") or reply.reason_phrase
        except (ValueError, AttributeError):
            detail = reply.reason_phrase
        raise STATUS_ERRORS.get(reply.status_code, errors.JitgateError)(str(detail))
    return reply
