"""Slack Block Kit messages: the blocks of the webhook's notifications, and answers to clicks.

A request that needs approval arrives with Approve and Deny buttons (each asks to confirm) whose
value is the request's id, and a link to the request's page in the console. The other events get
one section with their text. Every value that someone typed or named (a reason, a role, a target,
a name) is escaped with ``slack_escape`` before it becomes mrkdwn, so it can neither mention, nor
link, nor pass for the broker's own words; the broker's own markup (``*bold*``, a mention of a
mapped Slack user) is added around the escaped values, never inside them.

Slack bounds every text object; values are cut to fit (``MAX_FIELD``), saying so with ``…``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from jitgate.domain.text import printable

APPROVE = "jitgate.approve"
DENY = "jitgate.deny"
OPEN = "jitgate.open"
REVIEW_BLOCK = "jitgate.review"
MAX_FIELD = 1900
"""Below Slack's 2,000 characters for a section field and 3,000 for a section's text."""
_REQUEST_ID = re.compile(r"^[a-z]{1,4}-[0-9a-f]{1,32}$")

Block = dict[str, Any]


def slack_escape(value: str) -> str:
    """Text that chat software shows as typed: no mentions, links or formatting of its own."""
    return printable(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int = MAX_FIELD) -> str:
    """``text`` shortened to ``limit`` characters, ending in ``…`` if it was longer.

    Cut before escaping: an entity (``&amp;``) is never split in two.
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escaped(value: object, limit: int = MAX_FIELD) -> str:
    return slack_escape(cut(str(value), limit))


def console_url(public_url: str, request_id: str) -> str:
    """The request's page in the console."""
    return f"{public_url.rstrip('/')}/ui/requests/{quote(request_id, safe='')}"


def is_request_id(value: str) -> bool:
    return bool(_REQUEST_ID.match(value))


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text}


def _plain(text: str, limit: int = 75) -> Block:
    return {"type": "plain_text", "text": cut(text, limit), "emoji": False}


def _confirm(title: str, question: str, go: str, *, danger: bool) -> Block:
    dialog: Block = {
        "title": _plain(title, 100),
        "text": _mrkdwn(cut(question, 300)),
        "confirm": _plain(go, 30),
        "deny": _plain("Cancel", 30),
    }
    if danger:
        dialog["style"] = "danger"
    return dialog


def open_button(public_url: str, request_id: str) -> Block:
    return {
        "type": "button",
        "action_id": OPEN,
        "text": _plain("Open in console"),
        "url": console_url(public_url, request_id),
    }


def approval_blocks(payload: Mapping[str, Any], public_url: str | None) -> list[Block]:
    """An ``approval_needed`` notification: what is asked, by whom, why; Approve, Deny, Open."""
    request_id = str(payload.get("request", ""))
    requester = escaped(payload.get("requester", ""), 200)
    role = escaped(payload.get("role", ""), 200)
    fields = [_mrkdwn(f"*Requester*\n{requester}"), _mrkdwn(f"*Role*\n{role}")]
    targets = payload.get("targets")
    if isinstance(targets, list) and targets:
        fields.append(_mrkdwn("*Targets*\n" + escaped(", ".join(str(t) for t in targets))))
    if payload.get("duration"):
        fields.append(_mrkdwn(f"*Duration*\n{escaped(payload['duration'], 100)}"))
    fields.append(_mrkdwn(f"*Request*\n{escaped(request_id, 100)}"))
    what = "an extension of" if payload.get("extension") else "access as"
    blocks: list[Block] = [
        {
            "type": "section",
            "text": _mrkdwn(f"*Approval needed:* {requester} asks for {what} *{role}*"),
            "fields": fields,
        }
    ]
    if payload.get("reason"):
        blocks.append({"type": "section", "text": _mrkdwn(f"*Reason*\n{escaped(payload['reason'])}")})
    if not is_request_id(request_id):
        return blocks  # no buttons for what cannot be one of the broker's requests
    subject = f"*{role}* for {requester}"
    elements: list[Block] = [
        {
            "type": "button",
            "action_id": APPROVE,
            "style": "primary",
            "text": _plain("Approve"),
            "value": request_id,
            "confirm": _confirm("Approve this request?", f"Approve {subject}?", "Approve", danger=False),
        },
        {
            "type": "button",
            "action_id": DENY,
            "style": "danger",
            "text": _plain("Deny"),
            "value": request_id,
            "confirm": _confirm("Deny this request?", f"Deny {subject}?", "Deny", danger=True),
        },
    ]
    if public_url:
        elements.append(open_button(public_url, request_id))
    blocks.append({"type": "actions", "block_id": REVIEW_BLOCK, "elements": elements})
    return blocks


def notification_blocks(
    event: str, text: str, payload: Mapping[str, Any], public_url: str | None
) -> list[Block]:
    """The blocks of a notification whose ``text`` is already rendered (and escaped)."""
    if event == "approval_needed":
        return approval_blocks(payload, public_url)
    section: Block = {"type": "section", "text": _mrkdwn(cut(text, 2900))}
    request_id = str(payload.get("request", ""))
    if public_url and is_request_id(request_id):
        section["accessory"] = open_button(public_url, request_id)
    return [section]


def reply(text: str, *, replace: bool) -> dict[str, Any]:
    """An answer to a click: replacing the message with the buttons, or shown to the clicker alone.

    ``text`` is the broker's own mrkdwn; the caller escapes what it quotes.
    """
    if replace:
        return {
            "replace_original": True,
            "text": text,
            "blocks": [{"type": "section", "text": _mrkdwn(cut(text, 2900))}],
        }
    return {"response_type": "ephemeral", "replace_original": False, "text": text}
