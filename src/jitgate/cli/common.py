"""Options and helpers shared by the client commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

import typer

from jitgate import errors
from jitgate.cli.client import ApiClient, resolve
from jitgate.cli.output import fail
from jitgate.domain.durations import instant_argument

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", metavar="URL", help="Broker URL (default: $JITGATE_URL, then login file)"),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        help="API token (default: $JITGATE_TOKEN, then login file)",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]


@contextmanager
def api(url: str | None, token: str | None) -> Iterator[ApiClient]:
    """An API client; any refusal or failure inside becomes one line on stderr and an exit code."""
    try:
        final_url, final_token = resolve(url, token)  # may refresh a stored sign-in
    except errors.JitgateError as exc:
        fail(exc)
    client = ApiClient(final_url, final_token)
    try:
        yield client
    except errors.JitgateError as exc:
        fail(exc)
    finally:
        client.close()


@contextmanager
def offline() -> Iterator[None]:
    """Same error handling for commands that work on a data directory directly."""
    try:
        yield
    except errors.JitgateError as exc:
        fail(exc)


def iso_time(text: str, what: str) -> datetime:
    """An ISO 8601 time typed on the command line (``Z`` allowed) as aware UTC, else ``InvalidInput``."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise errors.InvalidInput(f"{what}: {text[:40]!r} is not an ISO 8601 time") from None
    return instant_argument(value, what)
