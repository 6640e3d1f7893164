"""The command line's HTTP exchange with the broker, against real local servers: answers of every
framing (length, chunks, end of connection), pages, refusals, broken answers, verified TLS, and a
request head that nothing typed can add a line to."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jitgate import errors
from jitgate.cli.brokerhttp import exchange
from jitgate.cli.client import ApiClient

SEEN: list[dict[str, Any]] = []


class Broker(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        SEEN.append({"path": self.path, "headers": dict(self.headers), "body": body})
        route = self.path.split("?")[0]
        if route == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b'{"a": ', b"[1, 2", b"]}"):
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if route == "/until-close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b'{"closed": true}')
            self.close_connection = True
            return
        status, data, extra = {
            "/ok": (200, {"ok": True}, {}),
            "/refused": (403, {"detail": "role shell needs approval"}, {}),
            "/teapot": (418, {"no": "detail"}, {}),
            "/page1": (200, [1, 2], {"Link": '</page2?cursor=x>; rel="next", </page0>; rel="prev"'}),
            "/page2": (200, [3], {}),
        }.get(route, (404, {"detail": "not found"}, {}))
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def serve(handler: type[BaseHTTPRequestHandler], wrap: Callable[[socket.socket], Any] | None = None) -> Any:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if wrap is not None:
        server.socket = wrap(server.socket)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = serve(Broker)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_answer_is_read_by_its_length_its_chunks_or_the_end_of_the_connection(url: str) -> None:
    assert exchange(url, None, "GET", "/ok").json() == {"ok": True}
    assert exchange(url, None, "GET", "/chunked").json() == {"a": [1, 2]}
    assert exchange(url, None, "GET", "/until-close").json() == {"closed": True}


def test_the_request_carries_token_body_and_query_as_the_api_expects(url: str) -> None:
    SEEN.clear()
    params = {"mine": True, "state": ["ACTIVE", "PENDING"], "skip": None, "limit": 5}
    exchange(url, "jg_token", "POST", "/ok", params=params, json_body={"role": "shell"})
    seen = SEEN[-1]
    assert seen["path"] == "/ok?mine=true&state=ACTIVE&state=PENDING&limit=5"
    assert seen["headers"]["Authorization"] == "Bearer jg_token"
    assert seen["headers"]["Content-Type"] == "application/json"
    assert json.loads(seen["body"]) == {"role": "shell"}


def test_a_path_cannot_add_a_line_to_the_request(url: str) -> None:
    SEEN.clear()
    with pytest.raises(errors.NotFound):
        exchange(url, None, "GET", "/requests/r-1 HTTP/1.1\r\nX-Injected: yes\r\n\r\nGET /ok")
    assert SEEN[-1]["path"] == "/requests/r-1%20HTTP/1.1%0D%0AX-Injected:%20yes%0D%0A%0D%0AGET%20/ok"
    assert "X-Injected" not in SEEN[-1]["headers"]
    assert len(SEEN) == 1


def test_a_token_with_a_line_break_is_refused_before_anything_is_sent(url: str) -> None:
    SEEN.clear()
    with pytest.raises(errors.InvalidInput, match="Authorization header"):
        exchange(url, "jg_x\r\nX-Injected: yes", "GET", "/ok")
    assert SEEN == []


def test_an_error_status_is_the_matching_error_with_the_brokers_detail(url: str) -> None:
    with pytest.raises(errors.PolicyDenied, match=r"^role shell needs approval$"):
        exchange(url, None, "GET", "/refused")
    with pytest.raises(errors.JitgateError, match=r"^I'm a Teapot$"):
        exchange(url, None, "GET", "/teapot")


def test_pages_follow_the_link_header_under_the_brokers_own_path(url: str) -> None:
    assert list(ApiClient(url, None).pages("/page1", {})) == [1, 2, 3]
    assert ApiClient(url, None).raw("GET", "/page1").links == {
        "next": {"url": "/page2?cursor=x"},
        "prev": {"url": "/page0"},
    }


def test_no_broker_or_a_bad_url_is_one_clear_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(errors.StorageUnavailable, match="cannot reach the broker"):
        exchange(f"http://127.0.0.1:{port}", None, "GET", "/ok")
    for bad in ("ftp://broker", "http://", "http://broker:99999"):
        with pytest.raises(errors.InvalidInput, match="is not http"):
            exchange(bad, None, "GET", "/ok")


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\n bad header\r\n\r\n",
    ],
)
def test_an_answer_that_is_not_http_is_one_clear_error(answer: bytes) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def reply() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(answer)

        threading.Thread(target=reply, daemon=True).start()
        port = listener.getsockname()[1]
        with pytest.raises(errors.StorageUnavailable, match=r"broken answer|cannot reach"):
            exchange(f"http://127.0.0.1:{port}", None, "GET", "/ok", timeout=5)


def certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "broker.pem", tmp_path / "broker.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def test_tls_is_verified_against_the_trust_store_with_the_host_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_file, key_file = certificate(tmp_path, "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = serve(Broker, lambda sock: context.wrap_socket(sock, server_side=True))
    port = server.server_address[1]
    try:
        with pytest.raises(errors.StorageUnavailable):  # not in the system's trust store
            exchange(f"https://localhost:{port}", None, "GET", "/ok")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
        assert exchange(f"https://localhost:{port}", None, "GET", "/ok").json() == {"ok": True}
        with pytest.raises(errors.StorageUnavailable):  # the certificate names another host
            exchange(f"https://127.0.0.1:{port}", None, "GET", "/ok")
    finally:
        server.shutdown()
        server.server_close()
