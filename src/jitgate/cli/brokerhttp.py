"""One HTTP/1.1 exchange with the broker's API, on a socket of the standard library.

The command line sends one request at a time to one server, JSON in and out with a bearer token,
and closes the connection after the answer. That much of HTTP fits here: the request is written
in full, the answer read up to its ``Content-Length`` or the end of its chunks, or else to the end
of the connection. Loading ``http.client`` (with the e-mail parser it reads headers with, and
TLS even for plain HTTP) would add a fifth of a second's worth of start-up to every command on a
busy machine, and ``jitgate ssh`` pays it before each login.

TLS (``https://``) is verified against the system's trust store (``SSL_CERT_FILE``/``SSL_CERT_DIR``
are honoured) with the host name checked. Proxies are not used: the broker is reached directly.
Nothing from the caller reaches the request head as it came: the path and query are percent-encoded
and a token with a control character is refused, so that none can add a header or a request.

Every transport failure becomes ``StorageUnavailable`` ("cannot reach the broker"), an answer that
is not HTTP the same, and every error status the matching ``JitgateError`` with the server's
one-line ``detail``.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from jitgate import __version__, errors
from jitgate.cli.config import STATUS_ERRORS

MAX_HEAD = 64 * 1024  # the status line and headers of an answer; its trailers, too
MAX_BODY = 1024**3  # a session recording is the largest thing the API sends; chunks add up to it
MAX_INFORMATIONAL = 8  # 1xx answers before the real one
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;.*)?")
_LENGTH = re.compile(r"[0-9]{1,15}")
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([^",;]+)"?')
_STATUS = re.compile(rb"HTTP/1\.[01] ([1-5]\d\d)(?: ([^\r\n]*))?")
# Characters a path and query keep as they are; every other one is percent-encoded.
_URL_SAFE = "!$&'()*+,/:;=?@[]~%"


class Malformed(Exception):
    """The answer is not HTTP/1.1 as the broker speaks it."""


class Headers:
    """An answer's headers: names in any case, a name given several times kept in order."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self._pairs if key.lower() == wanted]

    def get(self, name: str, default: str = "") -> str:
        found = self.get_all(name)
        return found[0] if found else default


class Reply:
    """An answer read in full: status, headers and body."""

    def __init__(self, status: int, reason: str, headers: Headers, content: bytes) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def links(self) -> dict[str, dict[str, str]]:
        """The RFC 8288 ``Link`` header by relation, as ``{"next": {"url": ...}}``."""
        found: dict[str, dict[str, str]] = {}
        for value in self.headers.get_all("Link"):
            for url, rel in _LINK.findall(value):
                found.setdefault(rel, {"url": url})
        return found


def query_string(params: dict[str, Any] | None) -> str:
    """``params`` as a query: a list repeats its key, ``True``/``False`` are ``true``/``false``, ``None``
    is left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None:
                pairs.append((key, str(item).lower() if isinstance(item, bool) else str(item)))
    return urlencode(pairs)


def request_head(method: str, target: str, host: str, headers: dict[str, str]) -> bytes:
    """The request line and headers; ``InvalidInput`` for a header value that could end its line."""
    target = quote(target, safe=_URL_SAFE)
    for name, value in headers.items():
        if any((c < " " and c != "\t") or c == "\x7f" for c in value):
            raise errors.InvalidInput(f"the {name} header cannot hold a control character")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class _Answer:
    """Reads one answer from a connection, no further than its end."""

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection
        self._buffer = b""
        self._closed = False

    def _more(self) -> None:
        if self._closed:
            raise Malformed("the connection ended before the answer did")
        data = self._connection.recv(256 * 1024)
        if not data:
            self._closed = True
        if len(self._buffer) + len(data) > MAX_HEAD + MAX_BODY:
            raise Malformed("the answer is too large")
        self._buffer += data

    def _take(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._more()
        taken, self._buffer = self._buffer[:size], self._buffer[size:]
        return taken

    def _line(self, limit: int = MAX_HEAD) -> bytes:
        while b"\r\n" not in self._buffer:
            if len(self._buffer) > limit:
                raise Malformed("a line of the answer is too long")
            self._more()
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def head(self) -> tuple[int, str, Headers]:
        for _ in range(MAX_INFORMATIONAL + 1):  # informational answers (1xx) come before the real one
            while b"\r\n\r\n" not in self._buffer:
                if len(self._buffer) > MAX_HEAD:
                    raise Malformed("the answer's headers are too long")
                self._more()
            raw, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
            first, *lines = raw.decode("latin-1").split("\r\n")
            status = _STATUS.fullmatch(first.encode("latin-1"))
            if status is None:
                raise Malformed("the answer is not HTTP/1.1")
            code = int(status[1])
            if code >= 200:
                break
        else:
            raise Malformed("the answer is informational without end")
        pairs = []
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise Malformed("a header of the answer is malformed")
            pairs.append((name, value.strip()))
        return code, (status[2] or b"").decode("latin-1"), Headers(pairs)

    def body(self, headers: Headers) -> bytes:
        if "chunked" in headers.get("Transfer-Encoding").lower():
            return self._chunks()
        lengths = set(headers.get_all("Content-Length"))
        if lengths:
            length = lengths.pop()
            if lengths or not _LENGTH.fullmatch(length) or int(length) > MAX_BODY:
                raise Malformed("the answer's Content-Length is not a size")
            return self._take(int(length))
        while not self._closed:  # neither: the answer ends with the connection
            self._more()
        return self._buffer

    def _chunks(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            sized = _CHUNK_SIZE.fullmatch(self._line())
            if sized is None:
                raise Malformed("a chunk of the answer has no size")
            size = int(sized[1], 16)
            if size == 0:
                self._trailers()
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise Malformed("the answer is too large")
            parts.append(self._take(size))
            if self._take(2) != b"\r\n":
                raise Malformed("a chunk of the answer does not end where its size says")

    def _trailers(self) -> None:
        """Skip the trailer fields, up to the empty line, within the head's limit."""
        left = MAX_HEAD
        while line := self._line(left):
            left -= len(line) + 2
            if left < 0:
                raise Malformed("the answer's trailers are too long")


def _connect(scheme: str, host: str, port: int, timeout: float) -> socket.socket:
    connection = socket.create_connection((host, port), timeout=timeout)
    if scheme != "https":
        return connection
    import ssl  # only for https: it is a good part of the cost of starting

    try:
        return ssl.create_default_context().wrap_socket(connection, server_hostname=host)
    except BaseException:
        connection.close()
        raise


def exchange(
    base_url: str,
    token: str | None,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    json_body: Any = None,
    timeout: float = 30,
) -> Reply:
    """Send one request to ``base_url`` + ``path`` (a path and query from the broker is fine too).

    An error status raises the matching ``JitgateError``; the reply of any other status is returned.
    """
    parts = urlsplit(base_url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    if parts.scheme not in {"http", "https"} or not parts.hostname or not port:
        raise errors.InvalidInput(f"broker URL {base_url!r} is not http(s)://HOST[:PORT]")
    target = parts.path.rstrip("/") + path
    query = query_string(params)
    if query:
        target += ("&" if "?" in target else "?") + query
    headers = {"Accept": "application/json", "User-Agent": f"jitgate/{__version__}", "Connection": "close"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = b"" if json_body is None else json.dumps(json_body).encode()
    if json_body is not None:
        headers["Content-Type"] = "application/json"
    if body or method in {"POST", "PUT", "PATCH"}:
        headers["Content-Length"] = str(len(body))
    host = parts.netloc.rpartition("@")[2]
    head = request_head(method, target, host, headers)
    try:
        with _connect(parts.scheme, parts.hostname, port, timeout) as connection:
            connection.sendall(head + body)
            answer = _Answer(connection)
            status, reason, got = answer.head()
            reply = Reply(status, reason, got, answer.body(got))
    except TimeoutError:
        raise errors.StorageUnavailable(f"the broker at {base_url} did not answer in time") from None
    except OSError:
        raise errors.StorageUnavailable(f"cannot reach the broker at {base_url}") from None
    except Malformed as exc:
        raise errors.StorageUnavailable(f"the broker at {base_url} sent a broken answer: {exc}") from None
    if reply.status_code >= 400:
        raise refusal(reply)
    return reply


def refusal(reply: Reply) -> errors.JitgateError:
    """The error an answer of 400 or more stands for, with the server's one-line ``detail``."""
    try:
        problem = reply.json()
        detail = problem.get("detail") or reply.reason_phrase
    except (ValueError, AttributeError):
        problem, detail = None, reply.reason_phrase
    if reply.status_code == 401:
        from jitgate.cli.stepup import from_answer  # a sign-in too old or too weak for the role

        step_up = from_answer(reply.headers.get("www-authenticate"), problem)
        if step_up is not None:
            return step_up
    return STATUS_ERRORS.get(reply.status_code, errors.JitgateError)(str(detail))
