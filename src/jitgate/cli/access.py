"""Client commands for people: roles, request, requests, show, approve, deny, cancel, grants,
revoke, extend, login, whoami."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from jitgate import errors
from jitgate.cli import oidc_login, waiting
from jitgate.cli.client import save_login
from jitgate.cli.common import JsonOpt, TokenOpt, UrlOpt, api, iso_time
from jitgate.cli.config import read_login
from jitgate.cli.output import emit_json, fail, left, say, table, when

LimitOpt = Annotated[
    int | None,
    typer.Option("--limit", min=1, metavar="N", help="Show at most this many (default: every page)"),
]
RequestArg = Annotated[str, typer.Argument(metavar="REQUEST-ID", help="The request, e.g. r-0123abcd")]
GrantArg = Annotated[str, typer.Argument(metavar="GRANT-ID", help="The grant, e.g. g-0123abcd")]
StateOpt = Annotated[
    list[str] | None, typer.Option("--state", metavar="STATE", help="Filter by state (repeatable)")
]


def register(app: typer.Typer) -> None:  # noqa: PLR0915 - one small function per command
    @app.command()
    def login(
        url: Annotated[
            str | None,
            typer.Option(
                "--url", envvar="JITGATE_URL", metavar="URL", help="Broker URL (default: the saved login's)"
            ),
        ] = None,
        token: Annotated[
            str | None,
            typer.Option(
                "--token",
                envvar="JITGATE_TOKEN",
                metavar="TOKEN",
                help="API token (default: asked for without echo, or one line read from a pipe)",
                show_default=False,
            ),
        ] = None,
        oidc: oidc_login.OidcOpt = False,
        device: oidc_login.DeviceOpt = False,
        browser: oidc_login.BrowserOpt = False,
        max_age: oidc_login.MaxAgeOpt = None,
        acr: oidc_login.AcrOpt = None,
        forget: oidc_login.ForgetOpt = False,
    ) -> None:
        """Store URL and a token the broker accepts (mode 0600); --oidc signs in at its identity provider."""
        oidc_login.check_options(oidc, device=device, browser=browser, max_age=max_age, acr=acr)
        if forget:
            oidc_login.logout_now()
            return
        url = url or read_login().get("url")
        if not isinstance(url, str) or not url:
            raise typer.BadParameter("give the broker's address", param_hint="--url")
        if oidc:
            oidc_login.login_now(url, device=device, browser=browser, max_age=max_age, acr=acr)
            return
        if token is None:
            token = read_token()
        with api(url, token) as client:
            me = client.get("/api/v1/whoami")
        path = save_login(client.url, token)
        say(f"logged in to {url} as {me['name']}; saved to {path}")

    @app.command()
    def whoami(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
        """Who the broker thinks you are."""
        with api(url, token) as client:
            me = client.get("/api/v1/whoami")
        if as_json:
            emit_json(me)
        else:
            say(f"{me['name']} groups={','.join(me['groups']) or '-'} admin={me['admin']}")

    @app.command()
    def roles(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
        """Roles in the policy and whether you may request or approve them."""
        with api(url, token) as client:
            found = client.get("/api/v1/roles")
        if as_json:
            emit_json(found)
            return
        table(
            "roles",
            ["role", "targets", "default", "max", "approval", "you may"],
            [
                (
                    r["name"],
                    ", ".join(r["targets"]),
                    r["default_duration"],
                    r["max_duration"],
                    "break-glass" if r["break_glass"] else r["approval"],
                    "/".join(
                        x for x, ok in (("request", r["may_request"]), ("approve", r["may_approve"])) if ok
                    )
                    or "-",
                )
                for r in found
            ],
        )

    @app.command()
    def request(
        role: Annotated[str, typer.Argument(metavar="ROLE", help="The role to ask for (see jitgate roles)")],
        reason: Annotated[
            str, typer.Option("--reason", "-r", metavar="REASON", help="Why; a ticket id if the role asks")
        ] = "",
        duration: Annotated[
            str | None, typer.Option("--for", metavar="DURATION", help="How long, e.g. 30m, 1h30m")
        ] = None,
        target: Annotated[
            list[str] | None,
            typer.Option("--target", "-t", metavar="TARGET", help="Only this target (repeatable)"),
        ] = None,
        start: Annotated[
            str | None, typer.Option("--start", metavar="TIME", help="Start later, e.g. 2026-12-01T09:00Z")
        ] = None,
        wait: Annotated[
            bool, typer.Option("--wait", help="Wait until the access is usable (exit 0) or refused")
        ] = False,
        wait_timeout: Annotated[
            float, typer.Option("--wait-timeout", metavar="SECONDS", min=0, help="Seconds to wait at most")
        ] = 3600,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Ask for a role. Prints the request; with --wait, waits until it is usable."""
        body: dict[str, Any] = {"role": role, "reason": reason, "targets": target or []}
        if duration:
            body["duration"] = duration
        with api(url, token) as client:
            if start:
                body["start_at"] = iso_time(start, "--start").isoformat()
            found = client.post("/api/v1/requests", body)
            result = waiting.Outcome(0)
            if wait:
                found, result = waiting.wait_for_access(client, found, wait_timeout)
        _print_request(found, as_json)
        if result.code != 0:
            waiting.report(result)
            raise typer.Exit(result.code)

    @app.command("requests")
    def list_requests(
        mine: Annotated[bool, typer.Option("--mine", help="Only my own")] = False,
        reviewable: Annotated[bool, typer.Option("--reviewable", help="Only those I may review")] = False,
        state: StateOpt = None,
        limit: LimitOpt = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Requests you made or may review, newest first: all of them, page after page."""
        params = {"mine": mine, "reviewable": reviewable, "state": state or []}
        with api(url, token) as client:
            found = list(client.pages("/api/v1/requests", params, at_most=limit))
        if as_json:
            emit_json(found)
            return
        table(
            "requests",
            ["id", "state", "requester", "role", "for", "reason", "created"],
            [
                (
                    r["id"],
                    r["state"],
                    r["requester"],
                    r["role"],
                    r["duration"],
                    r["reason"],
                    when(r["created_at"]),
                )
                for r in found
            ],
        )

    @app.command()
    def show(
        request_id: RequestArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
    ) -> None:
        """One request with its reviews and grant."""
        with api(url, token) as client:
            found = client.get(f"/api/v1/requests/{request_id}")
        _print_request(found, as_json)

    @app.command()
    def approve(
        request_id: RequestArg,
        comment: Annotated[
            str, typer.Option("--comment", "-c", metavar="COMMENT", help="A word for the requester")
        ] = "",
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Approve a pending request (never your own)."""
        _review(request_id, "approve", comment, url, token, as_json)

    @app.command()
    def deny(
        request_id: RequestArg,
        comment: Annotated[str, typer.Option("--comment", "-c", metavar="COMMENT", help="Why (required)")],
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Deny a pending request, saying why."""
        _review(request_id, "deny", comment, url, token, as_json)

    @app.command()
    def cancel(
        request_id: RequestArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Withdraw your own request before it starts."""
        with api(url, token) as client:
            found = client.post(f"/api/v1/requests/{request_id}/cancel")
        _print_request(found, as_json)

    @app.command("grants")
    def list_grants(
        all_holders: Annotated[bool, typer.Option("--all", help="Everyone's (admins)")] = False,
        state: StateOpt = None,
        limit: LimitOpt = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Your grants with time left, what they changed at targets, pending revocations: every page."""
        params = {"all": all_holders, "state": state or []}
        with api(url, token) as client:
            found = list(client.pages("/api/v1/grants", params, at_most=limit))
        if as_json:
            emit_json(found)
            return
        table(
            "grants",
            ["id", "state", "holder", "role", "targets", "expires", "left", "pending revocations"],
            [
                (
                    g["id"],
                    g["state"],
                    g["holder"],
                    g["role"],
                    ", ".join(g["targets"]),
                    when(g["expires_at"]),
                    left(g["seconds_left"]),
                    _pending(g["pending_revocations"]),
                )
                for g in found
            ],
        )
        _print_changes(found)

    @app.command()
    def revoke(
        grant_id: GrantArg,
        comment: Annotated[
            str, typer.Option("--comment", "-c", metavar="COMMENT", help="Why, for the audit log")
        ] = "",
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """End a grant now (holder, an approver of its role, or an admin)."""
        with api(url, token) as client:
            found = client.post(f"/api/v1/grants/{grant_id}/revoke", {"comment": comment})
        if as_json:
            emit_json(found)
        else:
            pending = _pending(found["pending_revocations"])
            say(f"grant {found['id']} {found['state']}; pending revocations: {pending}")

    @app.command()
    def extend(
        grant_id: GrantArg,
        duration: Annotated[str, typer.Option("--for", metavar="DURATION", help="How much longer, e.g. 30m")],
        reason: Annotated[
            str, typer.Option("--reason", "-r", metavar="REASON", help="Why; a ticket id if the role asks")
        ] = "",
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Ask to lengthen a grant (within the role's maximum, through its approval rule)."""
        with api(url, token) as client:
            found = client.post(f"/api/v1/grants/{grant_id}/extend", {"duration": duration, "reason": reason})
        _print_request(found, as_json)


def read_token() -> str:
    """The token typed at a hidden prompt, or the first line of a pipe; never echoed or printed."""
    import getpass
    import sys

    from jitgate.cli.config import check_token

    if sys.stdin.isatty():
        source = "the token typed"
        try:
            typed = getpass.getpass("API token: ")
        except EOFError:
            typed = ""
    else:
        source = "the token read from standard input"
        typed = sys.stdin.readline()
    typed = typed.strip()
    if not typed:
        fail(errors.InvalidInput("no token given (type it at the prompt, pipe it in, or pass --token)"))
    try:
        return check_token(typed, source)
    except errors.InvalidInput as exc:
        fail(exc)


def _review(
    request_id: str, verdict: str, comment: str, url: str | None, token: str | None, as_json: bool
) -> None:
    with api(url, token) as client:
        found = client.post(
            f"/api/v1/requests/{request_id}/reviews", {"verdict": verdict, "comment": comment}
        )
    _print_request(found, as_json)


def _pending(items: list[dict[str, Any]]) -> str:
    if not items:
        return "-"
    return "; ".join(f"{p['target']} (tries {p['attempts']}: {p['last_error'] or 'due'})" for p in items)


def _print_changes(found: list[dict[str, Any]]) -> None:
    """Below the table, one line per item each grant's elevations changed at a target."""
    from jitgate.domain.elevation_text import grant_lines

    changes = [f"  {g['id']} {line}" for g in found for line in grant_lines(g, when)]
    if changes:
        say("changed at targets:")
        for line in changes:
            say(line)


def _print_request(found: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(found)
        return
    grant = found.get("grant")
    lines = [
        f"request {found['id']}  {found['state']}",
        f"  {found['requester']} asks for {found['role']} for {found['duration']}"
        f" on {', '.join(found['targets'])}",
    ]
    if found.get("reason"):
        lines.append(f"  reason: {found['reason']}")
    lines.extend(f"  {r['verdict']} by {r['reviewer']}: {r['comment']}" for r in found.get("reviews", []))
    if grant:
        lines.append(
            f"  grant {grant['id']}  {grant['state']}  from {when(grant['starts_at'])} "
            f"until {when(grant['expires_at'])}  left {left(grant['seconds_left'])}"
        )
        if grant.get("elevations_pending"):
            lines.append(f"  elevations of existing accounts not applied yet: {grant['elevations_pending']}")
        if grant.get("elevations"):
            from jitgate.domain.elevation_text import grant_lines

            lines.extend(f"    {line}" for line in grant_lines(grant, when))
    for line in lines:
        say(line)
