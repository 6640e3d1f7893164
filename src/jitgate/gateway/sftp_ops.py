"""What an SFTP session did, as operations: each request matched with the server's answer. Pure.

``SftpTracker`` is fed both byte streams of one SFTP channel and gives back operations, each a
plain dict for one JSON line: ``{"op": "open", "path": ..., "flags": [...], "handle": ...,
"status": "ok"}``, ``{"op": "rename", "old": ..., "new": ..., "status": "no_such_file",
"message": ...}``. An operation is given when its answer arrives, so ``status`` is what the
server said (``ok``, ``eof``, ``no_such_file``, ``permission_denied``, ``failure``…, or
``code N``). Reads and writes are not given one by one: they are counted per handle and given
with its ``close`` (``read``/``written`` bytes, ``reads``/``writes`` answered, ``errors``), as
are the entries listed under a directory handle. Written data is only ever counted.

Memory is bounded whatever the peers send: at most ``MAX_PENDING`` requests waiting for an answer
and ``MAX_HANDLES`` open handles are remembered; the oldest beyond that is given at once as
``unanswered`` (or ``forgotten``). A packet that breaks the framing (see ``sftp_parse``) ends the
parsing of the channel: one ``unparseable`` operation, then bytes are only counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jitgate.gateway import sftp_parse as wire

MAX_PENDING = 1024
MAX_HANDLES = 1024

Operation = dict[str, Any]

# Operations on a handle, given with the path the handle was opened for.
_ON_HANDLE = frozenset({"fstat", "fsetstat", "fsync", "fstatvfs"})


@dataclass(slots=True)
class _Handle:
    handle: str
    path: str | None
    kind: str  # "file" or "dir"
    read: int = 0
    written: int = 0
    reads: int = 0
    writes: int = 0
    entries: int = 0
    errors: int = 0

    def summary(self) -> Operation:
        done: Operation = {"op": "close", "kind": self.kind, "path": self.path, "handle": self.handle}
        if self.kind == "dir":
            done["entries"] = self.entries
        else:
            done.update(read=self.read, written=self.written, reads=self.reads, writes=self.writes)
        done["errors"] = self.errors
        return done


class SftpTracker:
    """Both directions of one SFTP channel, folded into operations."""

    def __init__(self) -> None:
        self._client = wire.PacketReader()
        self._server = wire.PacketReader()
        self._pending: dict[int, wire.Request] = {}
        self._handles: dict[str, _Handle] = {}
        self.bytes_from_client = 0
        self.bytes_from_server = 0
        self.unparseable: str | None = None

    def from_client(self, data: bytes) -> list[Operation]:
        self.bytes_from_client += len(data)
        if self.unparseable is not None:
            return []
        done: list[Operation] = []
        for packet in self._client.feed(data):
            try:
                request = wire.decode_request(packet)
            except wire.Malformed as exc:
                done.append({"op": "malformed", "from": "client", "type": packet.type, "why": str(exc)})
                continue
            done.extend(self._asked(request))
        return done + self._broken("client", self._client)

    def from_server(self, data: bytes) -> list[Operation]:
        self.bytes_from_server += len(data)
        if self.unparseable is not None:
            return []
        done: list[Operation] = []
        for packet in self._server.feed(data):
            try:
                reply = wire.decode_reply(packet)
            except wire.Malformed as exc:
                done.append({"op": "malformed", "from": "server", "type": packet.type, "why": str(exc)})
                continue
            done.extend(self._answered(reply))
        return done + self._broken("server", self._server)

    def finish(self) -> list[Operation]:
        """What is left at the end: requests never answered, handles never closed."""
        done = [_unanswered(request, "unanswered") for request in self._pending.values()]
        for state in self._handles.values():
            done.append({**state.summary(), "status": "not_closed"})
        self._pending.clear()
        self._handles.clear()
        return done

    def _broken(self, side: str, reader: wire.PacketReader) -> list[Operation]:
        if reader.broken is None or self.unparseable is not None:
            return []
        self.unparseable = f"{side}: {reader.broken}"
        return [{"op": "unparseable", "from": side, "why": reader.broken}]

    def _asked(self, request: wire.Request) -> list[Operation]:
        if request.id is None:
            return [{"op": request.op, **request.fields}]
        done: list[Operation] = []
        old = self._pending.pop(request.id, None)
        if old is not None:  # an id reused before its answer: the first is never answered now
            done.append(_unanswered(old, "unanswered"))
        if len(self._pending) >= MAX_PENDING:
            oldest = next(iter(self._pending))
            done.append(_unanswered(self._pending.pop(oldest), "unanswered (too many requests at once)"))
        self._pending[request.id] = request
        return done

    def _answered(self, reply: wire.Reply) -> list[Operation]:
        if reply.id is None:
            return [{"op": reply.kind, **reply.fields}]
        request = self._pending.pop(reply.id, None)
        if request is None:
            return [{"op": "unexpected_answer", "id": reply.id, "kind": reply.kind}]
        status = _status(reply)
        op = request.op
        if op in {"read", "write", "readdir"}:
            self._count(request, reply, status)
            return []
        if op in {"open", "opendir"}:
            return self._opened(request, reply, status)
        if op == "close":
            return [self._closed(request, status)]
        found: Operation = {"op": op, **_recorded(request.fields)}
        if op in _ON_HANDLE:
            state = self._handles.get(request.fields["handle"])
            found["path"] = state.path if state is not None else None
        if reply.kind == "name":
            found["result"] = reply.fields["first"]
        return [_with_status(found, status, reply)]

    def _opened(self, request: wire.Request, reply: wire.Reply, status: str) -> list[Operation]:
        found: Operation = {"op": request.op, **_recorded(request.fields)}
        if reply.kind != "handle":
            return [_with_status(found, status, reply)]
        handle = reply.fields["handle"]
        found["handle"] = handle
        done = [_with_status(found, status, reply)]
        if handle in self._handles:  # the server reused a handle we think open
            done.append({**self._handles.pop(handle).summary(), "status": "forgotten"})
        if len(self._handles) >= MAX_HANDLES:
            oldest = next(iter(self._handles))
            done.append({**self._handles.pop(oldest).summary(), "status": "forgotten"})
        kind = "dir" if request.op == "opendir" else "file"
        self._handles[handle] = _Handle(handle, request.fields["path"], kind)
        return done

    def _closed(self, request: wire.Request, status: str) -> Operation:
        handle = request.fields["handle"]
        state = self._handles.pop(handle, None) or _Handle(handle, None, "unknown")
        return {**state.summary(), "status": status}

    def _count(self, request: wire.Request, reply: wire.Reply, status: str) -> None:
        handle = request.fields["handle"]
        state = self._handles.get(handle)
        if state is None:
            if len(self._handles) >= MAX_HANDLES:
                return
            # Opened before we could see it (or forgotten): still counted, its path unknown.
            state = self._handles[handle] = _Handle(
                handle, None, "dir" if request.op == "readdir" else "file"
            )
        if request.op == "write":
            if status == "ok":
                state.writes += 1
                state.written += request.fields["length"]
            else:
                state.errors += 1
        elif reply.kind == "data":
            state.reads += 1
            state.read += reply.fields["length"]
        elif reply.kind == "name":
            state.entries += reply.fields["count"]
        elif status != "eof":
            state.errors += 1


def _status(reply: wire.Reply) -> str:
    if reply.kind == "status":
        return wire.status_name(reply.fields["code"])
    if reply.kind == "unknown":
        return f"answered with packet type {reply.fields['type']}"
    return "ok"  # a HANDLE, DATA, NAME, ATTRS or EXTENDED_REPLY answers a request that succeeded


def _with_status(found: Operation, status: str, reply: wire.Reply) -> Operation:
    found["status"] = status
    if reply.kind == "status" and status != "ok" and reply.fields["message"]:
        found["message"] = reply.fields["message"]
    return found


def _recorded(fields: dict[str, Any]) -> dict[str, Any]:
    """A request's fields as recorded: empty attributes left out."""
    return {name: value for name, value in fields.items() if not (name == "attrs" and not value)}


def _unanswered(request: wire.Request, status: str) -> Operation:
    return {"op": request.op, **_recorded(request.fields), "status": status}
