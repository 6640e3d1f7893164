"""Commands for accounts: ``users add`` on a data directory (the first admin has no token yet);
``users list|disable|enable|groups`` and ``tokens list|revoke|rotate`` through the API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from jitgate.cli.common import JsonOpt, TokenOpt, UrlOpt, api, offline
from jitgate.cli.datadir import DataDirOpt, DbUrlOpt, data_settings, local_actor
from jitgate.cli.output import emit_json, out, table, when

users_app = typer.Typer(help="Local users and service accounts.", no_args_is_help=True)
UserArg = Annotated[str, typer.Argument(metavar="USER", help="The user's name")]
TokenIdArg = Annotated[str, typer.Argument(metavar="TOKEN-ID", help="The token's id, e.g. t-0123abcd")]
tokens_app = typer.Typer(help="API tokens: your own, or anyone's for admins.", no_args_is_help=True)

ExpiresOpt = Annotated[
    str | None,
    typer.Option(
        "--expires-in", metavar="DURATION", help="Token lifetime, e.g. 7d (default 30d, at most 365d)"
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")


def _user_row(user: dict[str, Any]) -> tuple[Any, ...]:
    state = "disabled" if user["disabled"] else "enabled"
    return (user["name"], user["kind"], ", ".join(user["groups"]), "yes" if user["admin"] else "", state)


def _show_user(user: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        emit_json(user)
    else:
        out.print(f"{user['name']} {verb}; groups: {', '.join(user['groups']) or '-'}", markup=False)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new user's name")],
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", metavar="GROUP", help="Group (repeatable)")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="May administer the broker")] = False,
    service: Annotated[bool, typer.Option("--service", help="A service account, not a person")] = False,
    expires_in: ExpiresOpt = None,
    data_dir: DataDirOpt = Path("data"),
    database_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a user with an API token; the token is printed once and stored only as a hash."""
    from datetime import timedelta

    from jitgate.clock import SystemClock
    from jitgate.domain.durations import duration_argument
    from jitgate.domain.identity import IdentityKind
    from jitgate.runtime import checkpoint_now, open_audit, open_database
    from jitgate.workflow.users import add_user, checked_lifetime

    with offline():
        settings = data_settings(data_dir, database_url)
        lifetime = checked_lifetime(
            duration_argument(expires_in) if expires_in else None,
            default=timedelta(seconds=settings.token_lifetime_seconds),
            maximum=timedelta(seconds=settings.token_max_lifetime_seconds),
        )
        db = open_database(settings)
        try:
            audit = open_audit(settings)
            identity, token = add_user(
                db,
                audit,
                SystemClock(),
                actor=local_actor(),
                name=name,
                groups=group or [],
                admin=admin,
                kind=IdentityKind.SERVICE if service else IdentityKind.USER,
                expires_in=lifetime,
            )
            checkpoint_now(settings, db, audit)  # no scheduler runs here to move the checkpoint
        finally:
            db.dispose()
    if as_json:
        emit_json({"name": identity.name, "groups": sorted(identity.groups), "admin": admin, "token": token})
    else:
        out.print(f"added {identity.name}; token (shown once):")
        print(token)


@users_app.command("list")
def users_list(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Every local user and whether they are enabled (admins)."""
    with api(url, token) as client:
        found = client.get("/api/v1/users")
    if as_json:
        emit_json(found)
        return
    table("users", ["name", "kind", "groups", "admin", "state"], [_user_row(u) for u in found])


@users_app.command("disable")
def users_disable(
    name: UserArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Disable a user: tokens and web sessions stop, grants are revoked, open requests cancelled."""
    with api(url, token) as client:
        _show_user(client.post(f"/api/v1/users/{name}/disable"), as_json, "disabled")


@users_app.command("enable")
def users_enable(name: UserArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Enable a disabled user again; their unexpired, unrevoked tokens work again."""
    with api(url, token) as client:
        _show_user(client.post(f"/api/v1/users/{name}/enable"), as_json, "enabled")


@users_app.command("groups")
def users_groups(
    name: UserArg,
    add: Annotated[
        list[str] | None, typer.Option("--add", metavar="GROUP", help="Group to join (repeatable)")
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", metavar="GROUP", help="Group to leave (repeatable)")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a user to groups or take them out (admins)."""
    with api(url, token) as client:
        body = {"add": add or [], "remove": remove or []}
        _show_user(client.post(f"/api/v1/users/{name}/groups", body), as_json, "changed")


@tokens_app.command("list")
def tokens_list(
    user: Annotated[
        str | None, typer.Option("--user", metavar="USER", help="Another user's tokens (admins)")
    ] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Everyone's tokens (admins)")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Your API tokens with their state, end and last use (never the tokens themselves)."""
    params = {"user": "*"} if all_users else {"user": user} if user else {}
    with api(url, token) as client:
        found = client.get("/api/v1/tokens", params=params)
    if as_json:
        emit_json(found)
        return
    table(
        "tokens",
        ["id", "user", "state", "created", "expires", "last used"],
        [
            (
                t["id"],
                t["user"],
                t["state"],
                when(t["created_at"]),
                when(t["expires_at"]),
                when(t["last_used_at"]),
            )
            for t in found
        ],
    )


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: TokenIdArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Revoke a token at once (and the web sessions opened with it)."""
    with api(url, token) as client:
        done = client.post(f"/api/v1/tokens/{token_id}/revoke")
    if as_json:
        emit_json(done)
    else:
        out.print(f"token {done['id']} of {done['user']} revoked", markup=False)


@tokens_app.command("rotate")
def tokens_rotate(
    token_id: TokenIdArg,
    expires_in: ExpiresOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace a token: the new one is printed once, the old one is revoked at once."""
    body = {"expires_in": expires_in} if expires_in else {}
    with api(url, token) as client:
        made = client.post(f"/api/v1/tokens/{token_id}/rotate", body)
    if as_json:
        emit_json(made)
        return
    out.print(f"token {made['id']} replaces {made['replaces']} until {when(made['expires_at'])}; shown once:")
    print(made["token"])
