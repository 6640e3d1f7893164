"""Webhooks: HMAC-signed JSON with a Slack-compatible ``text``, sent to a real HTTP receiver after
the change committed; break-glass use tells the approvers."""

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

from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.notify import WebhookNotifier
from support import CAROL

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
