"""A 401 asking for a fresher or stronger sign-in becomes one line naming the exact command to run,
from the problem+json body or RFC 9470's ``WWW-Authenticate`` header; other 401s stay as they are.

The API client is checked against a small local HTTP server answering as the broker does."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from jitgate import errors
from jitgate.cli.client import ApiClient
from jitgate.cli.exitcodes import exit_code
from jitgate.cli.stepup import bearer_params, from_answer, login_command

HEADER = (
    'Bearer error="insufficient_user_authentication", error_description="A fresh sign-in is needed", '
    'max_age=300, acr_values="urn:jitgate:mfa"'
)
COMMAND = "jitgate login --oidc --max-age 300 --acr urn:jitgate:mfa"


def test_the_command_carries_max_age_and_acr_quoted_for_a_shell() -> None:
    assert (
        login_command(300, ("urn:jitgate:mfa",)) == "jitgate login --oidc --max-age 300 --acr urn:jitgate:mfa"
    )
    assert login_command(None, ("a", "b")) == "jitgate login --oidc --acr 'a b'"
    assert login_command(0, ()) == "jitgate login --oidc --max-age 0"


def test_the_problem_body_says_what_to_run() -> None:
    body = {
        "code": "step_up_required",
        "detail": "prod-shell needs a sign-in within 5 minutes.",
        "max_age": 300,
        "acr_values": ["urn:jitgate:mfa"],
    }
    found = from_answer("Bearer", body)
    assert isinstance(found, errors.StepUpRequired)
    assert found.message == f"prod-shell needs a sign-in within 5 minutes; run {COMMAND}"
    assert (found.max_age, found.acr_values) == (300, ("urn:jitgate:mfa",))
    assert exit_code(found) == 4


def test_the_header_alone_is_enough() -> None:
    found = from_answer(HEADER, None)
    assert found is not None
    assert found.message == f"this needs a fresher or stronger sign-in; run {COMMAND}"
    assert bearer_params(HEADER)["error_description"] == "A fresh sign-in is needed"


@pytest.mark.parametrize(
    ("header", "body"),
    [
        ("Bearer", {"code": "unauthenticated", "detail": "token expired"}),
        ('Bearer error="invalid_token"', None),
        ('Basic realm="x", error="insufficient_user_authentication"', None),
        (None, ["not", "an", "object"]),
    ],
)
def test_other_refusals_are_not_step_up(header: str | None, body: Any) -> None:
    assert from_answer(header, body) is None


def test_values_that_could_mislead_the_terminal_are_left_out() -> None:
    body = {"code": "step_up_required", "max_age": "soon", "acr_values": "ok\x1b[31m; rm -rf / urn:x"}
    found = from_answer(None, body)
    assert found is not None
    assert found.acr_values == ("rm", "-rf", "/", "urn:x")
    assert "\x1b" not in found.message
    assert found.message.endswith("run jitgate login --oidc --acr 'rm -rf / urn:x'")


def test_the_api_client_raises_step_up_with_the_command() -> None:
    problem = json.dumps(
        {
            "code": "step_up_required",
            "detail": "prod-shell asks for a fresh sign-in",
            "max_age": 300,
            "acr_values": "urn:jitgate:mfa",
        }
    ).encode()

    class Broker(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(401)
            self.send_header("WWW-Authenticate", HEADER)
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Content-Length", str(len(problem)))
            self.end_headers()
            self.wfile.write(problem)

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Broker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = ApiClient(f"http://127.0.0.1:{server.server_address[1]}", "eyJ.a.b")
    try:
        with pytest.raises(
            errors.StepUpRequired, match=r"run jitgate login --oidc --max-age 300 --acr urn:jitgate:mfa$"
        ):
            client.post("/api/v1/requests", {"role": "prod-shell"})
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_what_the_body_leaves_out_is_taken_from_the_header() -> None:
    found = from_answer(HEADER, {"code": "step_up_required", "detail": "prod-shell asks for more"})
    assert found is not None
    assert found.message == f"prod-shell asks for more; run {COMMAND}"
