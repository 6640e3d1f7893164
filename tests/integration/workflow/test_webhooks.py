"""Webhooks: HMAC-signed JSON with a Slack-compatible ``text`` and ``blocks``, sent to a real HTTP
receiver after the change committed; break-glass use tells the approvers."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from jitgate.domain.model import Verdict
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.notify import WebhookNotifier, render_text
from support import ALICE, BOB, CAROL

SECRET = "webhook-test-secret"


@pytest.fixture
def receiver() -> Iterator[tuple[str, queue.Queue[tuple[dict[str, str], bytes]]]]:
    got: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.put((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    server.server_close()


def test_break_glass_sends_a_signed_notification(
    ctx: WorkflowContext, receiver: tuple[str, queue.Queue[tuple[dict[str, str], bytes]]]
) -> None:
    url, got = receiver
    ctx.notifier = WebhookNotifier(url, SECRET)
    req = svc.submit(ctx, CAROL, role="breakglass", reason="site down")
    headers, body = got.get(timeout=10)
    expected = hmac.new(
        SECRET.encode(), headers["X-Jitgate-Timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(headers["X-Jitgate-Signature"], "sha256=" + expected)
    payload = json.loads(body)
    assert payload["event"] == "break_glass"
    assert payload["request"] == req["id"]
    assert payload["approvers"] == ["group:sre-leads"]
    assert payload["text"].startswith("BREAK-GLASS: carol activated breakglass")


HOSTILE = "INC-1 <!channel> <@U123> <https://evil.example|click here> & <!here>"


def test_chat_markup_in_reasons_and_comments_arrives_inert(
    ctx: WorkflowContext, receiver: tuple[str, queue.Queue[tuple[dict[str, str], bytes]]]
) -> None:
    url, got = receiver
    ctx.notifier = WebhookNotifier(url, SECRET)
    req = svc.submit(ctx, ALICE, role="prod-shell", reason=HOSTILE)
    svc.review(ctx, BOB, req["id"], verdict=Verdict.DENY, comment="no <!everyone> <#C1|ops>")
    sent = [json.loads(got.get(timeout=10)[1]) for _ in range(2)]
    assert [p["event"] for p in sent] == ["approval_needed", "denied"]
    for payload in sent:
        assert "<" not in payload["text"]
        assert ">" not in payload["text"]
        # The Block Kit form of the same message is as inert as its text.
        assert "<" not in json.dumps(payload["blocks"])
        assert ">" not in json.dumps(payload["blocks"])
    assert sent[0]["text"] == (
        f"Approval needed: alice asks for prod-shell ({req['id']}): INC-1 &lt;!channel&gt; &lt;@U123&gt; "
        "&lt;https://evil.example|click here&gt; &amp; &lt;!here&gt;"
    )
    assert sent[1]["text"].endswith("denied by bob")
    # The JSON fields stay the data as typed; only the chat text is escaped.
    assert sent[0]["reason"] == HOSTILE
    assert sent[1]["comment"] == "no <!everyone> <#C1|ops>"


def test_text_from_before_the_input_check_arrives_with_visible_escapes() -> None:
    text = render_text("approval_needed", {"requester": "a\x1b[2Jb", "reason": "x\u202ey\nz"})
    assert "\x1b" not in text
    assert "\u202e" not in text
    assert "\n" not in text
    assert "a\\x1b[2Jb" in text
