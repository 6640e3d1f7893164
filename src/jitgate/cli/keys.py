"""``jitgate keys add|list|remove``: the SSH public keys you sign in with at the broker's SSH gateway.

Only the public half ever leaves this machine: a file that holds a private key is refused before
anything is sent.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from jitgate import errors
from jitgate.cli.common import JsonOpt, TokenOpt, UrlOpt, api
from jitgate.cli.output import emit_json, fail, say, table, when

keys_app = typer.Typer(
    help="SSH public keys for the SSH gateway: yours, or anyone's for admins.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


def public_key_line(path: Path) -> str:
    """The one public key line in ``path`` (``-``: standard input); refuses private keys unsent."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not text"
        raise errors.InvalidInput(f"cannot read {path}: {why}") from None
    if "PRIVATE KEY" in text:
        raise errors.InvalidInput(f"{path} holds a private key; give its public half (the .pub file)")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) != 1:
        raise errors.InvalidInput(f"{path} must hold exactly one public key line")
    return lines[0]


def _row(key: dict[str, Any]) -> tuple[Any, ...]:
    return (
        key["id"],
        key["user"],
        key["key_type"],
        key["fingerprint"],
        key["comment"],
        f"{key['state']}, ephemeral" if key["ephemeral"] else key["state"],
        when(key["expires_at"]),
        when(key["last_used_at"]),
    )


@keys_app.command("add")
def keys_add(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="Your OpenSSH public key, e.g. ~/.ssh/id_ed25519.pub (- for stdin)"
        ),
    ],
    comment: Annotated[
        str | None,
        typer.Option("--comment", metavar="COMMENT", help="Shown in listings (default: the key's own)"),
    ] = None,
    lifetime: Annotated[
        str | None,
        typer.Option(
            "--for",
            metavar="DURATION",
            help="How long the key may be used, e.g. 90d (default: the longest allowed)",
        ),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a public key for signing in at the SSH gateway."""
    try:
        body: dict[str, Any] = {"public_key": public_key_line(file)}
    except errors.JitgateError as exc:
        fail(exc)
    if comment is not None:
        body["comment"] = comment
    if lifetime is not None:
        body["expires_in"] = lifetime
    with api(url, token) as client:
        added = client.post("/api/v1/keys", body)
    if as_json:
        emit_json(added)
    else:
        say(f"key {added['id']} ({added['fingerprint']}) registered until {when(added['expires_at'])}")


@keys_app.command("list")
def keys_list(
    user: Annotated[
        str | None, typer.Option("--user", metavar="USER", help="Another user's keys (admins)")
    ] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Everyone's keys (admins)")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Your registered keys, ephemeral ones (made by `jitgate ssh --via-gateway`) marked."""
    if user is not None and all_users:
        fail(errors.InvalidInput("give --user or --all, not both"))
    params = {"user": "*"} if all_users else {"user": user} if user else {}
    with api(url, token) as client:
        found = client.get("/api/v1/keys", params=params)
    if as_json:
        emit_json(found)
        return
    table(
        "ssh keys",
        ["id", "user", "type", "fingerprint", "comment", "state", "expires", "last used"],
        [_row(k) for k in found],
    )


@keys_app.command("remove")
def keys_remove(
    key_id: Annotated[str, typer.Argument(metavar="KEY-ID", help="The key's id (see jitgate keys list)")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a key at once: it no longer signs anyone in at the gateway."""
    with api(url, token) as client:
        removed = client.call("DELETE", f"/api/v1/keys/{quote(key_id, safe='')}")
    if as_json:
        emit_json(removed)
    else:
        say(f"key {removed['id']} of {removed['user']} removed ({removed['fingerprint']})")
