"""Webhook notifications: HMAC-SHA256-signed JSON with a Slack-compatible ``text`` and ``blocks``.

Sent from a background thread after the workflow's transaction has committed; a webhook that is
down delays nothing and loses nothing that matters (the audit log is the record, not the webhook).

The ``text`` is read by chat software as markup: every value put into it is escaped the way Slack
documents (``&`` ``<`` ``>`` as entities), so a reason like ``<!channel>`` or ``<https://x|click>``
arrives as plain characters, never as a mention or a link; control characters arrive as visible
escapes. The other fields are JSON data and stay as they are.

``blocks`` is the same message in Slack's Block Kit (``slack_messages.py``): a request waiting
for approval carries Approve and Deny buttons, answered at ``/api/v1/chat/slack/interactions``.
The person an outcome concerns (the requester of a granted or denied request, the holder of a
grant) is mentioned as ``<@U…>`` when the Slack user map names their Slack account, so Slack
tells them; that mention is the only markup the broker puts into the text, and it is built from
an id checked when the map was read, never from what anyone typed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from jitgate.workflow.slack_messages import notification_blocks, slack_escape

log = logging.getLogger("jitgate.notify")

_TEXT = {
    "approval_needed": "Approval needed: {requester} asks for {role} ({request}): {reason}",
    "granted": "Access granted to {requester}{holder}: {role} ({request}{grant}){approved_by}",
    "denied": "Request {request} of {requester} for {role} denied by {by}",
    "expiring": "Grant {grant} of {holder} expires in {seconds_left}s",
    "expired": "Grant {grant} of {holder} ({role}) expired",
    "revoked": "Grant {grant} of {holder} revoked by {by}",
    "break_glass": "BREAK-GLASS: {requester} activated {role} ({request}): {reason}",
}


def signature(secret: str, body: bytes, timestamp: str) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


MENTIONED = {"granted", "denied", "expiring", "expired", "revoked"}
"""Events that tell someone about their own access: they are mentioned if their Slack id is known."""
SlackIdOf = Callable[[str], str | None]


def render_text(event: str, payload: dict[str, Any], slack_id_of: SlackIdOf | None = None) -> str:
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
    if payload.get("by") and event == "granted":
        values["approved_by"] = f", approved by {values['by']}"
    else:
        values["approved_by"] = ""
    if slack_id_of is not None and event in MENTIONED:
        for key in ("requester", "holder"):
            name = payload.get(key)
            found = slack_id_of(name) if isinstance(name, str) and name else None
            if found is not None:
                values[key] = f"<@{found}>"
    return template.format(**values)


def message(
    event: str,
    payload: dict[str, Any],
    *,
    public_url: str | None = None,
    slack_id_of: SlackIdOf | None = None,
) -> dict[str, Any]:
    """The JSON a webhook receives for ``event``: the payload's data, ``text`` and ``blocks``."""
    text = render_text(event, payload, slack_id_of)
    blocks = notification_blocks(event, text, payload, public_url)
    return {**payload, "event": event, "text": text, "blocks": blocks}


class WebhookNotifier:
    def __init__(
        self,
        url: str,
        secret: str | None,
        *,
        timeout: float = 5.0,
        public_url: str | None = None,
        slack_id_of: SlackIdOf | None = None,
    ) -> None:
        self._url = url
        self._secret = secret
        self._public_url = public_url
        self._slack_id_of = slack_id_of
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
                    message(event, payload, public_url=self._public_url, slack_id_of=self._slack_id_of),
                    sort_keys=True,
                ).encode()
                timestamp = str(int(time.time()))
                headers = {"Content-Type": "application/json", "X-Jitgate-Timestamp": timestamp}
                if self._secret:
                    headers["X-Jitgate-Signature"] = signature(self._secret, body, timestamp)
                try:
                    client.post(self._url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    log.warning("webhook for %s failed: %s", event, type(exc).__name__)
