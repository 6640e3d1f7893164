"""The command line's HTTP client facing a broker that lies in its framing (a hostile broker at a
configured URL, or whoever answers in its place on plain HTTP).

Every answer below is not HTTP/1.1 as RFC 9112 frames it. The client must say so in one line
(``StorageUnavailable``, "broken answer"), never take a body of some other length than the answer
declared, never hold more than its limits in memory, and never wait on forever while the other
side keeps talking.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from jitgate import errors
from jitgate.cli import brokerhttp
from jitgate.cli.brokerhttp import exchange
from jitgate.cli.client import ApiClient

OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


def chunked(*chunks: bytes, sizes: list[str] | None = None) -> bytes:
    out = OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    for n, chunk in enumerate(chunks):
        size = sizes[n] if sizes else f"{len(chunk):x}"
        out += size.encode("latin-1") + b"\r\n" + chunk + b"\r\n"
    return out + b"0\r\n\r\n"


def answering(answer: bytes | Iterator[bytes]) -> str:
    """A broker that answers any request with ``answer`` (bytes, or pieces sent one after another)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def reply() -> None:
        with listener:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                try:
                    for piece in [answer] if isinstance(answer, bytes) else answer:
                        connection.sendall(piece)
                except OSError:
                    pass  # the client hung up, as it should

    threading.Thread(target=reply, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


def refused(url: str) -> None:
    with pytest.raises(errors.StorageUnavailable, match="broken answer"):
        exchange(url, None, "GET", "/api/v1/whoami", timeout=5)


@pytest.mark.parametrize("size", ["-2", "+2", "0x2", "0_2", " 2", "2\x0b"])
def test_a_chunk_size_that_is_not_plain_hex_digits_is_a_broken_answer(size: str) -> None:
    refused(answering(chunked(b"{}", sizes=[size])))


@pytest.mark.parametrize("length", ["\u00b2", "+2", "-2", "2, 2", "99999999999999999999999"])
def test_a_content_length_that_is_not_plain_digits_is_a_broken_answer(length: str) -> None:
    refused(answering(OK_HEAD + f"Content-Length: {length}\r\n\r\n{{}}".encode("latin-1", "replace")))


def test_two_content_lengths_that_disagree_are_a_broken_answer() -> None:
    refused(answering(OK_HEAD + b"Content-Length: 2\r\nContent-Length: 20\r\n\r\n{}" + b" " * 18))


def test_chunks_that_add_up_past_the_body_limit_are_refused_without_being_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(brokerhttp, "MAX_BODY", 4096)
    refused(answering(chunked(*[b" " * 1024] * 8)))


def test_informational_answers_by_the_thousand_are_not_waited_through() -> None:
    # Without a bound, a broker sending these without end holds the command forever.
    def endless() -> Iterator[bytes]:
        for _ in range(100):
            yield b"HTTP/1.1 100 Continue\r\n\r\n" * 100
        yield OK_HEAD + b"Content-Length: 2\r\n\r\n{}"

    refused(answering(endless()))


def test_trailers_past_the_head_limit_are_not_read_through() -> None:
    def endless() -> Iterator[bytes]:
        yield OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
        for _ in range(100):
            yield b"X-Trailer: 1\r\n" * 1000
        yield b"\r\n"

    refused(answering(endless()))


def test_a_well_framed_answer_still_reads_with_chunk_extensions_and_trailers() -> None:
    answer = OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2;name=value\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n"
    assert exchange(answering(answer), None, "GET", "/api/v1/whoami", timeout=5).json() == {}


@pytest.mark.parametrize("body", [b"<html>", b"\xff\xfe", b"{"])
def test_an_answer_that_is_not_json_is_one_line_not_a_traceback(body: bytes) -> None:
    answer = OK_HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    with pytest.raises(errors.StorageUnavailable, match="not the broker's JSON"):
        ApiClient(answering(answer), None).get("/api/v1/whoami")
    with pytest.raises(errors.StorageUnavailable, match="not the broker's JSON"):
        list(ApiClient(answering(answer), None).pages("/api/v1/requests", {}))
