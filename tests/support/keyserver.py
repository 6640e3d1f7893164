"""A real HTTP server handing out an identity provider's keys (JWKS) for tests of token checks."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def jwk_of(key: rsa.RSAPrivateKey, kid: str = "k1") -> dict[str, Any]:
    """The public JWK of ``key``, for signing with RS256 under ``kid``."""
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def jwks_of(*keys: rsa.RSAPrivateKey) -> bytes:
    """A JWKS document of ``keys``, named k1, k2, ... in order."""
    return json.dumps({"keys": [jwk_of(key, f"k{n}") for n, key in enumerate(keys, 1)]}).encode()


@dataclass
class KeyServer:
    """Serves ``files`` by path (404 for any other); remembers every path it was asked for."""

    files: dict[str, bytes]
    asked: list[str] = field(default_factory=list)
    url: str = ""

    def __enter__(self) -> KeyServer:
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server_self.asked.append(self.path)
                body = server_self.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body or b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
