"""Webhook notifications: HMAC-SHA256-signed JSON with a Slack-compatible ``text`` field.

Sent from a background thread after the workflow's transaction has committed; a webhook that is
down delays nothing and loses nothing that matters (the audit log is the record, not the webhook).

The ``text`` is read by chat software as markup: every value put into it is escaped the way Slack
documents (``&`` ``<`` ``>`` as entities), so a reason like ``<!channel>`` or ``<https://x|click>``
arrives as plain characters, never as a mention or a link; control characters arrive as visible
escapes. The other fields are JSON data and stay as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from typing import Any

import httpx

from jitgate.domain.text import printable

log = logging.getLogger("jitgate.notify")

_TEXT = {
    "approval_needed": "Approval needed: {requester} asks for {role} ({request}): {reason}",
    "granted": "Access granted: {request}{grant}",
    "denied": "Request {request} denied by {by}",
    "expiring": "Grant {grant} of {holder} expires in {seconds_left}s",
    "expired": "Grant {grant} of {holder} ({role}) expired",
    "revoked": "Grant {grant} of {holder} revoked by {by}",
    "break_glass": "BREAK-GLASS: {requester} activated {role} ({request}): {reason}",
}


def signature(secret: str, body: bytes, timestamp: str) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def slack_escape(value: str) -> str:
    """Text that chat software shows as typed: no mentions, links or formatting of its own."""
    return printable(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_text(event: str, payload: dict[str, Any]) -> str:
    template = _TEXT.get(event, slack_escape(event).replace("{", "{{").replace("}", "}}"))
    values: dict[str, str | int] = {
        "request": "",
        "grant": "",
        "reason": "",
        "role": "",
        "requester": "",
        "holder": "",
        "by": "",
    }
    values.update({k: v for k, v in payload.items() if isinstance(v, int)})
    values.update({k: slack_escape(v) for k, v in payload.items() if isinstance(v, str)})
    return template.format(**values)


class WebhookNotifier:
    def __init__(self, url: str, secret: str | None, *, timeout: float = 5.0) -> None:
        self._url = url
        self._secret = secret
        self._timeout = timeout
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=10_000)
        self._thread = threading.Thread(target=self._run, name="jitgate-webhooks", daemon=True)
        self._thread.start()

    def send(self, event: str, payload: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait((event, payload))
        except queue.Full:
            log.warning("webhook queue full; dropped %s notification", event)

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout) as client:
            while True:
                event, payload = self._queue.get()
                body = json.dumps(
                    {"event": event, "text": render_text(event, payload), **payload}, sort_keys=True
                ).encode()
                timestamp = str(int(time.time()))
                headers = {"Content-Type": "application/json", "X-Jitgate-Timestamp": timestamp}
                if self._secret:
                    headers["X-Jitgate-Signature"] = signature(self._secret, body, timestamp)
                try:
                    client.post(self._url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    log.warning("webhook for %s failed: %s", event, type(exc).__name__)
