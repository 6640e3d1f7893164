"""The ``sessions`` commands: list, show, replay, export and end sessions through the SSH gateway,
all through the API (holders their own; admins and auditors everyone's)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from jitgate.cli.common import JsonOpt, TokenOpt, UrlOpt, api, offline
from jitgate.cli.output import emit_json, out, say, table, when
from jitgate.errors import Conflict

sessions_app = typer.Typer(
    help="Sessions through the SSH gateway and their recordings.", no_args_is_help=True
)
ChannelOpt = Annotated[
    int | None,
    typer.Option("--channel", min=0, metavar="N", help="Recording of this channel (default: the shell)"),
]


def register(app: typer.Typer) -> None:
    app.add_typer(sessions_app, name="sessions")


SessionArg = Annotated[str, typer.Argument(metavar="SESSION-ID", help="The session, e.g. s-0123abcd")]


def _path(session_id: str, tail: str = "") -> str:
    return f"/api/v1/sessions/{quote(session_id, safe='')}{tail}"


def size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover - the loop always returns


def _row(s: dict[str, Any]) -> tuple[Any, ...]:
    end = when(s["ended_at"]) if s["ended_at"] else s["state"]
    return (
        s["id"],
        s["user"],
        s["target"],
        s["login"],
        s["grant"],
        when(s["started_at"]),
        end,
        f"{size(s['bytes_in'])} / {size(s['bytes_out'])}",
    )


@sessions_app.command("list")
def sessions_list(
    active: Annotated[bool, typer.Option("--active", help="Only sessions still open")] = False,
    user: Annotated[
        str | None, typer.Option("--user", metavar="USER", help="Another user's sessions (admins, auditors)")
    ] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Everyone's sessions (admins, auditors)")] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, metavar="N", help="At most this many, newest first")
    ] = 100,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sessions newest first: yours, or another user's or everyone's for admins and auditors."""
    params: dict[str, Any] = {"user": "*"} if all_users else {"user": user} if user else {}
    if active:
        params["active"] = "true"
    with api(url, token) as client:
        found = list(client.pages("/api/v1/sessions", params, at_most=limit))
    if as_json:
        emit_json(found)
        return
    table(
        "sessions",
        ["id", "user", "target", "login", "grant", "start", "end", "bytes in / out"],
        [_row(s) for s in found],
    )


@sessions_app.command("show")
def sessions_show(
    session_id: SessionArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """One session: who, where, under which grant, how it ended, and its recordings."""
    with api(url, token) as client:
        found = client.get(_path(session_id))
    if as_json:
        emit_json(found)
        return
    fields = [
        ("session", found["id"]),
        ("user", found["user"]),
        ("target", f"{found['login']}@{found['target']}"),
        ("grant", found["grant"]),
        ("certificate serial", found["credential_serial"]),
        ("source", found["source"]),
        ("state", found["state"]),
        ("started", when(found["started_at"])),
        ("ended", when(found["ended_at"])),
        ("end reason", found["end_reason"] or "-"),
        ("bytes in / out", f"{size(found['bytes_in'])} / {size(found['bytes_out'])}"),
    ]
    if found["kill_requested_at"]:
        fields.append(
            ("end requested", f"{when(found['kill_requested_at'])} by {found['kill_requested_by']}")
        )
    for rec in found["recordings"]:
        cut = " (truncated)" if rec.get("truncated") else ""
        fields.append(
            (f"recording {rec.get('channel')}", f"{rec.get('kind')} {size(int(rec.get('size') or 0))}{cut}")
        )
    table("session", ["", ""], fields)


def _recording(url: str | None, token: str | None, session_id: str, channel: int | None) -> bytes:
    params = {"channel": channel} if channel is not None else {}
    with api(url, token) as client:
        return client.raw("GET", _path(session_id, "/recording"), params=params).content


@sessions_app.command("play")
def sessions_play(
    session_id: SessionArg,
    speed: Annotated[
        float, typer.Option("--speed", min=0.01, metavar="FACTOR", help="Faster (2) or slower (0.5)")
    ] = 1.0,
    channel: ChannelOpt = None,
    idle_limit: Annotated[
        float | None,
        typer.Option("--idle-limit", min=0, metavar="SECONDS", help="Cut pauses to this many seconds"),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Replay a session's shell recording on this terminal, with its timing."""
    import time

    from jitgate.cli.playback import frames

    cast = _recording(url, token, session_id, channel).decode("utf-8", errors="replace")
    with offline():
        # Checked whole before anything is shown: a broken recording prints one line, not half a replay.
        shown = list(frames(cast, speed=speed, idle_limit=idle_limit))
    terminal = sys.stdout.buffer  # the recorded bytes as they were, line endings included
    for delay, text in shown:
        if delay > 0:
            terminal.flush()
            time.sleep(delay)  # the replay's own timing
        terminal.write(text.encode("utf-8", errors="replace"))
    terminal.flush()


def write_private(path: Path, data: bytes, *, force: bool) -> None:
    """Write ``data`` to ``path`` as a 0600 file, whole or not at all; an existing file only if ``force``."""
    if path.exists() and not force:
        raise Conflict(f"{path} exists; give --force to replace it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if force:
            tmp.replace(path)
        else:
            try:
                os.link(tmp, path)  # fails, instead of replacing, if the file appeared meanwhile
            except FileExistsError:
                raise Conflict(f"{path} exists; give --force to replace it") from None
    finally:
        tmp.unlink(missing_ok=True)


@sessions_app.command("export")
def sessions_export(
    session_id: SessionArg,
    output: Annotated[Path, typer.Option("--out", metavar="FILE", help="File to write (private, 0600)")],
    channel: ChannelOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the file if it exists")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Save a session's recording as the gateway wrote it (asciicast for a shell, else JSON lines)."""
    with offline():
        if output.exists() and not force:
            raise Conflict(f"{output} exists; give --force to replace it")
    data = _recording(url, token, session_id, channel)
    with offline():
        try:
            write_private(output, data, force=force)
        except OSError as exc:
            from jitgate.errors import InvalidInput

            raise InvalidInput(f"cannot write {output}: {exc.strerror}") from None
    say(f"recording of {session_id} written to {output} ({size(len(data))})")


@sessions_app.command("kill")
def sessions_kill(
    session_id: SessionArg,
    reason: Annotated[str, typer.Option("--reason", metavar="REASON", help="Why; goes into the audit log")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """End a live session (admins, or its holder): its gateway closes it within a second."""
    with api(url, token) as client:
        found = client.post(_path(session_id, "/kill"), {"reason": reason})
    if as_json:
        emit_json(found)
    else:
        out.print(f"session {found['id']} of {found['user']} is being ended", markup=False)
