"""SFTP version 3 packets, read from byte streams that arrive in arbitrary chunks. Pure, no I/O.

The protocol is that of draft-ietf-secsh-filexfer-02, which OpenSSH speaks: every packet is
``uint32 length, byte type`` and ``length - 1`` bytes of payload; every request but INIT and every
answer but VERSION carries a ``uint32`` request id next. ``PacketReader`` reassembles one
direction; ``decode_request`` and ``decode_reply`` turn a packet into named fields, which
``sftp_ops.SftpTracker`` matches up into operations.

Nothing a peer sends can make this grow without bound or raise anything but ``Malformed``: a
packet longer than ``MAX_PACKET`` (OpenSSH's own limit, 256 KiB) makes the stream unparseable
and the reader buffers nothing more; each text field kept is cut to ``MAX_TEXT`` characters.
File names are bytes on the wire: they are decoded as UTF-8 with ``surrogateescape``, so that a
name that is not UTF-8 survives (see ``recording_file.json_line``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

MAX_PACKET = 256 * 1024
"""The largest ``length`` accepted, as OpenSSH's sftp-server accepts (SFTP_MAX_MSG_LENGTH)."""
MAX_TEXT = 4096
"""Characters kept of a path, a status message or an extension name."""

INIT, VERSION = 1, 2
OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = 3, 4, 5, 6, 7, 8, 9, 10
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME = 11, 12, 13, 14, 15, 16, 17, 18
READLINK, SYMLINK = 19, 20
STATUS, HANDLE, DATA, NAME, ATTRS = 101, 102, 103, 104, 105
EXTENDED, EXTENDED_REPLY = 200, 201

STATUS_NAMES = {
    0: "ok",
    1: "eof",
    2: "no_such_file",
    3: "permission_denied",
    4: "failure",
    5: "bad_message",
    6: "no_connection",
    7: "connection_lost",
    8: "op_unsupported",
}
OPEN_FLAGS = (
    (0x01, "read"),
    (0x02, "write"),
    (0x04, "append"),
    (0x08, "creat"),
    (0x10, "trunc"),
    (0x20, "excl"),
)

_ATTR_SIZE, _ATTR_UIDGID, _ATTR_PERMISSIONS, _ATTR_ACMODTIME = 0x1, 0x2, 0x4, 0x8
_ATTR_EXTENDED = 0x80000000

# Requests whose fields are all paths (strings), by packet type: the operation and field names.
_PATH_REQUESTS: dict[int, tuple[str, tuple[str, ...]]] = {
    LSTAT: ("lstat", ("path",)),
    OPENDIR: ("opendir", ("path",)),
    REMOVE: ("remove", ("path",)),
    RMDIR: ("rmdir", ("path",)),
    REALPATH: ("realpath", ("path",)),
    STAT: ("stat", ("path",)),
    RENAME: ("rename", ("old", "new")),
    READLINK: ("readlink", ("path",)),
    # OpenSSH sends SYMLINK's arguments the other way round from the draft (its PROTOCOL, 4.1):
    # the target first, then the link to create. That is the order of every server deployed.
    SYMLINK: ("symlink", ("target", "link")),
}
_HANDLE_REQUESTS = {CLOSE: "close", FSTAT: "fstat", READDIR: "readdir"}
# OpenSSH's extensions (its PROTOCOL, section 4) whose arguments are paths or handles.
_EXTENSIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "posix-rename@openssh.com": ("rename", ("old", "new")),
    "hardlink@openssh.com": ("hardlink", ("old", "new")),
    "statvfs@openssh.com": ("statvfs", ("path",)),
    "expand-path@openssh.com": ("expand-path", ("path",)),
    "fstatvfs@openssh.com": ("fstatvfs", ("handle",)),
    "fsync@openssh.com": ("fsync", ("handle",)),
}


class Malformed(ValueError):
    """A packet whose fields do not fit the protocol."""


@dataclass(frozen=True, slots=True)
class Packet:
    type: int
    payload: bytes
    """What follows the type byte."""


class PacketReader:
    """Reassembles the packets of one direction; buffers at most one packet of ``max_packet``."""

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self._max = max_packet
        self._buffer = bytearray()
        self.broken: str | None = None
        """Why the stream cannot be parsed any more, once it cannot."""

    @property
    def buffered(self) -> int:
        """Bytes held of a packet not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Packet]:
        """The packets that ``data`` completes, in order."""
        if self.broken is not None:
            return []
        self._buffer += data
        packets: list[Packet] = []
        start = 0
        buffer = self._buffer
        while len(buffer) - start >= 4:
            (length,) = struct.unpack_from(">I", buffer, start)
            if length == 0 or length > self._max:
                self.broken = f"a packet of {length} bytes (at most {self._max} are accepted)"
                buffer.clear()
                return packets
            end = start + 4 + length
            if len(buffer) < end:
                break
            packets.append(Packet(buffer[start + 4], bytes(buffer[start + 5 : end])))
            start = end
        del buffer[:start]
        return packets


@dataclass(frozen=True, slots=True)
class Request:
    """A packet from the client: ``op`` names it; ``id`` is None for INIT."""

    op: str
    id: int | None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    """A packet from the server: ``kind`` is status, handle, data, name, attrs, extended_reply or version."""

    kind: str
    id: int | None
    fields: dict[str, Any] = field(default_factory=dict)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self._at + n > len(self._data):
            raise Malformed("the packet ends inside a field")
        chunk = self._data[self._at : self._at + n]
        self._at += n
        return chunk

    def uint32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def uint64(self) -> int:
        value: int = struct.unpack(">Q", self.take(8))[0]
        return value

    def string(self) -> bytes:
        return self.take(self.uint32())

    def text(self) -> str:
        return text(self.string())

    def skip_string(self) -> int:
        """Skip a string and return its length, without copying it."""
        n = self.uint32()
        if self._at + n > len(self._data):
            raise Malformed("the packet ends inside a field")
        self._at += n
        return n

    def attrs(self) -> dict[str, Any]:
        """The ATTRS structure: only what is present, permissions in octal."""
        flags = self.uint32()
        found: dict[str, Any] = {}
        if flags & _ATTR_SIZE:
            found["size"] = self.uint64()
        if flags & _ATTR_UIDGID:
            found["uid"], found["gid"] = self.uint32(), self.uint32()
        if flags & _ATTR_PERMISSIONS:
            found["permissions"] = f"{self.uint32():o}"
        if flags & _ATTR_ACMODTIME:
            found["atime"], found["mtime"] = self.uint32(), self.uint32()
        if flags & _ATTR_EXTENDED:
            count = self.uint32()
            for _ in range(count):
                self.skip_string()
                self.skip_string()
        return found

    @property
    def rest(self) -> int:
        return len(self._data) - self._at


def text(raw: bytes, limit: int = MAX_TEXT) -> str:
    """Wire bytes as text: UTF-8, other bytes kept as surrogate escapes, cut to ``limit``."""
    decoded = raw.decode("utf-8", "surrogateescape")
    if len(decoded) > limit:
        return f"{decoded[:limit]}…[{len(raw)} bytes]"
    return decoded


def handle_id(raw: bytes) -> str:
    """A handle as recorded: hexadecimal (handles are opaque bytes), cut like any text."""
    return raw[:256].hex()


def open_flags(pflags: int) -> list[str]:
    return [name for bit, name in OPEN_FLAGS if pflags & bit]


def status_name(code: int) -> str:
    return STATUS_NAMES.get(code, f"code {code}")


def decode_request(packet: Packet) -> Request:  # noqa: PLR0911 - one return per packet type
    """The request ``packet`` carries; ``Malformed`` if its fields do not fit."""
    cur = _Cursor(packet.payload)
    kind = packet.type
    if kind == INIT:
        return Request("init", None, {"version": cur.uint32()})
    rid = cur.uint32()
    if kind in _PATH_REQUESTS:
        op, names = _PATH_REQUESTS[kind]
        return Request(op, rid, {name: cur.text() for name in names})
    if kind in _HANDLE_REQUESTS:
        return Request(_HANDLE_REQUESTS[kind], rid, {"handle": handle_id(cur.string())})
    if kind == OPEN:
        path = cur.text()
        flags = open_flags(cur.uint32())
        return Request("open", rid, {"path": path, "flags": flags, "attrs": cur.attrs()})
    if kind == READ:
        handle = handle_id(cur.string())
        cur.uint64()
        return Request("read", rid, {"handle": handle, "length": cur.uint32()})
    if kind == WRITE:
        handle = handle_id(cur.string())
        cur.uint64()
        return Request("write", rid, {"handle": handle, "length": cur.skip_string()})  # data never kept
    if kind == SETSTAT:
        return Request("setstat", rid, {"path": cur.text(), "attrs": cur.attrs()})
    if kind == FSETSTAT:
        return Request("fsetstat", rid, {"handle": handle_id(cur.string()), "attrs": cur.attrs()})
    if kind == MKDIR:
        return Request("mkdir", rid, {"path": cur.text(), "attrs": cur.attrs()})
    if kind == EXTENDED:
        return _extended(rid, cur)
    return Request("unknown", rid, {"type": kind})


def _extended(rid: int, cur: _Cursor) -> Request:
    name = cur.text()
    if name == "lsetstat@openssh.com":
        return Request("lsetstat", rid, {"extension": name, "path": cur.text(), "attrs": cur.attrs()})
    if name in _EXTENSIONS:
        op, names = _EXTENSIONS[name]
        fields: dict[str, Any] = {"extension": name}
        for each in names:
            fields[each] = handle_id(cur.string()) if each == "handle" else cur.text()
        return Request(op, rid, fields)
    return Request("extended", rid, {"extension": name})


def decode_reply(packet: Packet) -> Reply:  # noqa: PLR0911 - one return per packet type
    """The answer ``packet`` carries; ``Malformed`` if its fields do not fit."""
    cur = _Cursor(packet.payload)
    kind = packet.type
    if kind == VERSION:
        version = cur.uint32()
        extensions: list[str] = []
        while cur.rest > 0 and len(extensions) < 64:
            extensions.append(text(cur.string(), 128))
            cur.skip_string()
        return Reply("version", None, {"version": version, "extensions": extensions})
    rid = cur.uint32()
    if kind == STATUS:
        code = cur.uint32()
        # The message and language tag are missing in some old servers' answers.
        message = text(cur.string(), 256) if cur.rest >= 4 else ""
        return Reply("status", rid, {"code": code, "message": message})
    if kind == HANDLE:
        return Reply("handle", rid, {"handle": handle_id(cur.string())})
    if kind == DATA:
        return Reply("data", rid, {"length": cur.skip_string()})
    if kind == NAME:
        count = cur.uint32()
        first = cur.text() if count else None
        return Reply("name", rid, {"count": count, "first": first})
    if kind == ATTRS:
        return Reply("attrs", rid, {"attrs": cur.attrs()})
    if kind == EXTENDED_REPLY:
        return Reply("extended_reply", rid)
    return Reply("unknown", rid, {"type": kind})
