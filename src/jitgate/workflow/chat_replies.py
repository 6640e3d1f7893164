"""Answers to clicks in Slack, posted to the interaction's ``response_url`` from a background thread.

Slack acknowledges a click by the HTTP status of the broker's answer and takes the message to show
from a POST to the ``response_url`` the click came with. That URL comes from a signed request, so
it is Slack's; it is still only ever posted to when it starts with one of the configured prefixes
(``JITGATE_SLACK_RESPONSE_URLS``, ``https://hooks.slack.com/`` by default): a broker must not be
made to send requests to wherever a body names, even a signed one.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx

from jitgate.errors import InvalidInput

log = logging.getLogger("jitgate.chat")


def _origin_and_path(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"https", "http"} or not parts.hostname or parts.username or parts.password:
        raise ValueError(url)
    port = parts.port if parts.port is not None else (443 if scheme == "https" else 80)
    return scheme, parts.hostname.lower(), port, parts.path or "/"


def checked_prefixes(prefixes: list[str]) -> list[tuple[str, str, int, str]]:
    """The allowed ``response_url`` prefixes, parsed; ``InvalidInput`` for one that is not a URL."""
    out = []
    for prefix in prefixes:
        try:
            scheme, host, port, path = _origin_and_path(prefix)
        except ValueError:
            raise InvalidInput(
                f"JITGATE_SLACK_RESPONSE_URLS: {prefix[:80]!r} is not an http(s) URL"
            ) from None
        out.append((scheme, host, port, path if path.endswith("/") else path + "/"))
    return out


class ResponseSender:
    """Posts answers to allowed ``response_url`` addresses, in order, never blocking the caller."""

    def __init__(self, prefixes: list[str], *, timeout: float = 5.0) -> None:
        self._allowed = checked_prefixes(prefixes)
        self._timeout = timeout
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=1000)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def allowed(self, url: str) -> bool:
        try:
            scheme, host, port, path = _origin_and_path(url)
        except ValueError:
            return False
        return any(
            (scheme, host, port) == (s, h, p) and path.startswith(prefix) for s, h, p, prefix in self._allowed
        )

    def send(self, url: str | None, answer: dict[str, Any]) -> bool:
        """Queue ``answer`` for ``url``; False (and logged) if there is none or it is not allowed."""
        if not url:
            return False
        if not self.allowed(url):
            log.warning(
                "not posting a Slack answer to %s: not in JITGATE_SLACK_RESPONSE_URLS", urlsplit(url).netloc
            )
            return False
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="jitgate-slack-replies", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((url, answer))
        except queue.Full:
            log.warning("Slack answer queue full; dropped an answer")
            return False
        return True

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
            while True:
                url, answer = self._queue.get()
                body = json.dumps(answer).encode()
                try:
                    response = client.post(url, content=body, headers={"Content-Type": "application/json"})
                except httpx.HTTPError as exc:
                    log.warning("posting a Slack answer failed: %s", type(exc).__name__)
                    continue
                if response.status_code >= 300:
                    log.warning("Slack refused an answer: HTTP %d", response.status_code)
