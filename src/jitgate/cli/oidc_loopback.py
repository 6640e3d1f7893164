"""Signing in through the browser on this machine (RFC 8252, a loopback redirect).

The CLI listens on ``127.0.0.1`` on a port the system picks, sends the browser to the provider's
authorization endpoint and waits for the provider to send it back to ``/callback``. A code is
taken only with this sign-in's ``state`` (and, when the provider names itself in the answer as
RFC 9207 asks, the right ``iss``); anything else gets 400 and the CLI waits on. The code is
bound to this process by PKCE (S256), and the ID token to this sign-in by ``nonce``.
"""

from __future__ import annotations

import hmac
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from jitgate import errors
from jitgate.domain.oauth import code_challenge

CALLBACK_PATH = "/callback"
WAIT_SECONDS = 300
_DONE_PAGE = (
    b"<!doctype html><title>jitgate</title><p>Signed in. You can close this page and go back to the terminal."
)
_REFUSED_PAGE = (
    b"<!doctype html><title>jitgate</title><p>This answer does not belong to the sign-in in progress."
)


@dataclass(frozen=True, slots=True)
class LoopbackRequest:
    """One sign-in's secrets: ``state`` for the answer, ``nonce`` for the ID token, PKCE's verifier."""

    state: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(64))

    @property
    def challenge(self) -> str:
        return code_challenge(self.verifier)

    def authorize_url(self, endpoint: str, redirect_uri: str, params: dict[str, str]) -> str:
        query = {
            **params,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
        }
        joiner = "&" if urllib.parse.urlsplit(endpoint).query else "?"
        return endpoint + joiner + urllib.parse.urlencode(query)

    def token_form(self, code: str, redirect_uri: str, client_id: str) -> dict[str, str]:
        return {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code_verifier": self.verifier,
        }


@dataclass(slots=True)
class Answer:
    """What came back to the callback: a code, or the provider's error; None while waiting."""

    code: str | None = None
    error: str | None = None


def judge(request: LoopbackRequest, issuer: str, query: dict[str, list[str]]) -> Answer | None:
    """The answer the callback's query carries, or None when it is not this sign-in's."""

    def one(name: str) -> str | None:
        values = query.get(name, [])
        return values[0] if len(values) == 1 else None

    state = one("state")
    if state is None or not hmac.compare_digest(state.encode(), request.state.encode()):
        return None
    iss = query.get("iss")
    if iss is not None and iss != [issuer]:
        return None  # a mix-up: another provider's answer (RFC 9207)
    if one("error") is not None:
        return Answer(error=str(one("error"))[:64])
    code = one("code")
    return Answer(code=code) if code else None


class _Callback(HTTPServer):
    def __init__(self, request: LoopbackRequest, issuer: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.sign_in = request
        self.issuer = issuer
        self.answer: Answer | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Callback
    timeout = 5  # a connection that sends nothing (a browser's preconnect) does not hold the wait

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        if parts.path != CALLBACK_PATH:
            self._reply(404, b"<!doctype html><title>jitgate</title><p>Not found.")
            return
        answer = judge(self.server.sign_in, self.server.issuer, urllib.parse.parse_qs(parts.query))
        if answer is None or self.server.answer is not None:
            self._reply(400, _REFUSED_PAGE)
            return
        self.server.answer = answer
        self._reply(200, _DONE_PAGE)

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass  # the query holds the code: never log it


def sign_in(
    *,
    endpoint: str,
    issuer: str,
    params: dict[str, str],
    show: Callable[[str], None],
    exchange: Callable[[LoopbackRequest, str, str], Any],
    wait_seconds: float = WAIT_SECONDS,
) -> tuple[Any, LoopbackRequest]:
    """Run one browser sign-in: ``show`` gets the address to open; ``exchange(request, code,
    redirect_uri)`` trades the code for tokens. Returns its answer and this sign-in's secrets."""
    request = LoopbackRequest()
    with _Callback(request, issuer) as server:
        redirect_uri = f"http://127.0.0.1:{server.server_address[1]}{CALLBACK_PATH}"
        show(request.authorize_url(endpoint, redirect_uri, params))
        deadline = time.monotonic() + wait_seconds
        server.timeout = 0.5
        while server.answer is None:
            if time.monotonic() > deadline:
                raise errors.Unauthenticated("no answer from the browser sign-in in time")
            server.handle_request()
    answer = server.answer
    if answer.error is not None:
        what = "refused" if answer.error == "access_denied" else f"ended with {answer.error}"
        raise errors.Unauthenticated(f"the sign-in was {what} at the identity provider")
    return exchange(request, str(answer.code), redirect_uri), request
