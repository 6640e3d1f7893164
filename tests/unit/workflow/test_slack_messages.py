"""Block Kit messages and the parsing of clicks: buttons that carry the request, text that stays inert."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from jitgate.errors import InvalidInput
from jitgate.workflow.chat import parse_click
from jitgate.workflow.chat_replies import ResponseSender
from jitgate.workflow.notify import message
from jitgate.workflow.slack_messages import APPROVE, DENY, OPEN, approval_blocks, cut

HOSTILE = "INC-1 <!channel> <@U123> <https://evil.example|click> & *bold*"
ASKED: dict[str, Any] = {
    "request": "r-0123456789ab",
    "requester": "alice<@U1>",
    "role": "prod-shell",
    "targets": ["web-1", "web-2"],
    "duration": "1h",
    "reason": HOSTILE,
}


def texts(value: object) -> list[str]:
    """Every ``text`` string in a Block Kit structure."""
    if isinstance(value, dict):
        found = [v for k, v in value.items() if k == "text" and isinstance(v, str)]
        return found + [t for v in value.values() for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def test_a_request_waiting_for_approval_has_approve_deny_and_console_buttons() -> None:
    blocks = approval_blocks(ASKED, "https://jitgate.example/")
    actions = next(b for b in blocks if b["type"] == "actions")
    approve, deny, open_link = actions["elements"]
    assert (approve["action_id"], approve["style"], approve["value"]) == (
        APPROVE,
        "primary",
        "r-0123456789ab",
    )
    assert (deny["action_id"], deny["style"], deny["value"]) == (DENY, "danger", "r-0123456789ab")
    assert approve["confirm"]["confirm"]["text"] == "Approve"
    assert deny["confirm"]["style"] == "danger"
    assert open_link["action_id"] == OPEN
    assert open_link["url"] == "https://jitgate.example/ui/requests/r-0123456789ab"


def test_what_people_typed_is_escaped_in_every_text_of_the_blocks() -> None:
    every = " ".join(texts(approval_blocks(ASKED, None)))
    assert "<" not in every
    assert ">" not in every
    assert "&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil.example|click&gt; &amp;" in every
    assert "alice&lt;@U1&gt;" in every
    assert "web-1, web-2" in every


def test_without_a_public_url_there_is_no_console_button() -> None:
    actions = next(b for b in approval_blocks(ASKED, None) if b["type"] == "actions")
    assert [e["action_id"] for e in actions["elements"]] == [APPROVE, DENY]


def test_no_buttons_for_something_that_is_not_a_request_id() -> None:
    blocks = approval_blocks({**ASKED, "request": "r-1|<x>"}, "https://j.example")
    assert all(b["type"] != "actions" for b in blocks)


def test_long_values_are_cut_to_fit_slacks_bounds() -> None:
    blocks = approval_blocks({**ASKED, "reason": "x" * 5000, "targets": ["t" * 3000]}, None)
    assert all(len(t) <= 3000 for t in texts(blocks))
    for field in blocks[0]["fields"]:
        assert len(field["text"]) <= 2000
    assert cut("abc", 2) == "a…"


def test_an_outcome_mentions_the_requester_only_through_the_user_map() -> None:
    told = {"request": "r-0123456789ab", "by": "bob", "requester": "alice", "role": "prod-shell"}
    ids = {"alice": "U0ALICE"}
    granted = message("granted", told, public_url="https://j.example", slack_id_of=ids.get)
    assert granted["text"] == "Access granted to <@U0ALICE>: prod-shell (r-0123456789ab), approved by bob"
    assert granted["blocks"][0]["accessory"]["url"] == "https://j.example/ui/requests/r-0123456789ab"
    denied = message("denied", {**told, "requester": "erin<@U9>"}, slack_id_of=ids.get)
    assert denied["text"] == "Request r-0123456789ab of erin&lt;@U9&gt; for prod-shell denied by bob"
    asked = message("approval_needed", {**ASKED, "requester": "alice"}, slack_id_of=ids.get)
    assert "<@" not in asked["text"]


def body(payload: object) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


CLICK: dict[str, Any] = {
    "type": "block_actions",
    "user": {"id": "U0BOB", "team_id": "T0001"},
    "team": {"id": "T0001"},
    "actions": [{"action_id": APPROVE, "value": "r-0123456789ab", "type": "button"}],
    "response_url": "https://hooks.slack.com/actions/T0001/1/x",
}


def test_a_click_on_approve_is_parsed_from_the_form_payload() -> None:
    click = parse_click(body(CLICK))
    assert (click.team, click.user, click.request_id) == ("T0001", "U0BOB", "r-0123456789ab")
    assert click.verdict is not None
    assert click.verdict.value == "approve"
    assert click.response_url == "https://hooks.slack.com/actions/T0001/1/x"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"payload=not-json",
        b"payload=1&payload=2",
        b"\xff\xfe",
        body({**CLICK, "type": "view_submission"}),
        body({**CLICK, "user": {"id": "bob"}}),
        body({**CLICK, "team": {"id": "x"}, "user": {"id": "U0BOB"}}),
        body({**CLICK, "actions": []}),
        body({**CLICK, "actions": [{"action_id": "other", "value": "r-1"}]}),
        body({**CLICK, "actions": [{"action_id": APPROVE, "value": "../admin"}]}),
        body([CLICK]),
    ],
)
def test_a_body_that_is_not_a_click_on_jitgates_buttons_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_click(raw)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.slack.com/actions/T1/2/3", True),
        ("https://HOOKS.slack.com/actions/T1/2/3", True),
        ("http://hooks.slack.com/actions/T1/2/3", False),
        ("https://hooks.slack.com.evil.example/actions", False),
        ("https://hooks.slack.com:8443/actions", False),
        ("https://user@hooks.slack.com/actions", False),
        ("https://evil.example/?https://hooks.slack.com/", False),
        ("file:///etc/passwd", False),
        ("not a url", False),
        ("https://hooks.slack.com:443/actions/T1/2/3", True),
        ("https://hooks.slack.com@evil.example/actions", False),
        ("https://hooks.slack.com:443@evil.example/actions", False),
        ("https://hooks.slack.com\\@evil.example/actions", False),
        ("https://evil.example#@hooks.slack.com/actions", False),
        ("https://evil.example\\.hooks.slack.com/actions", False),
        ("https://hooks.slack.com./actions", False),
        ("https://hooks.slack.com\t.evil.example/actions", False),
        ("https://hooks.slack.\uff43om/actions", False),
        ("https://hooks.slack.com%2eevil.example/actions", False),
        ("https://[::1]/actions", False),
        ("https://hooks.slack.com:0/actions", False),
    ],
)
def test_answers_are_posted_only_to_the_allowed_response_urls(url: str, allowed: bool) -> None:
    assert ResponseSender(["https://hooks.slack.com/"]).allowed(url) is allowed


def test_an_allowed_prefix_with_a_path_allows_only_below_it() -> None:
    sender = ResponseSender(["http://127.0.0.1:8099/slack"])
    assert sender.allowed("http://127.0.0.1:8099/slack/a")
    assert not sender.allowed("http://127.0.0.1:8099/slackers")
    with pytest.raises(InvalidInput, match="JITGATE_SLACK_RESPONSE_URLS"):
        ResponseSender(["ftp://x"])
