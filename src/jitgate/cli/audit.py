"""The ``audit`` commands: list through the API; verify and repair on the data directory; export
from either."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from jitgate.cli.common import JsonOpt, TokenOpt, UrlOpt, api, iso_time, offline
from jitgate.cli.datadir import DataDirOpt, DbUrlOpt, data_settings, local_actor, require_existing
from jitgate.cli.output import emit_json, err, out, table, when
from jitgate.clock import SystemClock

if TYPE_CHECKING:
    from jitgate.cli.client import ApiClient

audit_app = typer.Typer(help="The tamper-evident audit log.", invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


@audit_app.callback()
def audit_list(
    ctx: typer.Context,
    user: Annotated[
        str | None, typer.Option("--user", metavar="USER", help="Only events by this actor")
    ] = None,
    role: Annotated[
        str | None, typer.Option("--role", metavar="ROLE", help="Only events about this role")
    ] = None,
    action: Annotated[
        str | None, typer.Option("--action", metavar="ACTION", help="Only this action, e.g. request.approved")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="TIME", help="ISO time, e.g. 2026-11-01T00:00Z")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", help="The newest N events")] = 100,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List audit events (admins and auditors see all; others their own)."""
    if ctx.invoked_subcommand is not None:
        return
    params: dict[str, Any] = {"limit": limit}
    for key, value in (("actor", user), ("role", role), ("action", action), ("since", since)):
        if value:
            params[key] = value.replace("Z", "+00:00") if key == "since" else value
    with api(url, token) as client:
        found = list(reversed(client.get("/api/v1/audit", params=params)))  # oldest of the newest first
    if as_json:
        emit_json(found)
        return
    table(
        "audit",
        ["seq", "at", "actor", "action", "request", "grant", "role", "details"],
        [
            (
                e["seq"],
                when(e["at"]),
                e["actor"],
                e["action"],
                e.get("request_id"),
                e.get("grant_id"),
                e.get("role"),
                json.dumps(e.get("details") or {}, sort_keys=True)[:80],
            )
            for e in found
        ],
    )


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDirOpt = Path("data"),
    database_url: DbUrlOpt = None,
    public_key: Annotated[
        str | None,
        typer.Option("--public-key", metavar="HEX", help="Verify with this Ed25519 public key (hex) only"),
    ] = None,
    witness: Annotated[
        list[Path] | None,
        typer.Option(
            "--witness",
            metavar="FILE",
            help="A witness file of signed heads the chain must contain (repeatable)",
        ),
    ] = None,
    recordings: Annotated[
        Path | None,
        typer.Option(
            "--recordings",
            metavar="DIR",
            help="The gateway's recordings directory (default from the settings)",
        ),
    ] = None,
) -> None:
    """Check the hash chain, the signed head, the checkpoint kept outside the database, the
    witness files and the gateway's session recordings; exit 0 when intact, 10 when broken,
    rolled back or forked, or when a recording is missing or changed."""
    from jitgate.audit import keys as audit_keys
    from jitgate.audit.verify import anchors, verify_anchored
    from jitgate.runtime import open_database

    with offline():
        settings = data_settings(data_dir, database_url)
        require_existing(settings)
        if public_key is not None:
            key = audit_keys.public_key_from_hex(public_key)
        else:
            path = settings.audit_key_file or audit_keys.default_key_path(settings.data_dir)
            key = audit_keys.load_signing_key(path).public_key()
        db = open_database(settings)
        with db.read() as conn:
            result = verify_anchored(conn, key, **anchors(settings, witness or (), recordings))
        db.dispose()
    if result.ok:
        out.print(f"audit log intact: {result.count} records; {result.anchors}", markup=False)
        return
    if result.verdict == "recordings_damaged":
        for line in result.problems:  # "session s-…: recording s-…/1-shell.cast is missing", one each
            err.print(f"recording damaged: {line}", markup=False)
    elif result.verdict in {"rolled_back", "forked"}:
        err.print(result.problem, markup=False)  # "audit log rolled back: …", "audit log forked: …"
    elif result.first_bad_seq is not None:
        err.print(f"audit log BROKEN at record {result.first_bad_seq}: {result.problem}", markup=False)
    else:
        err.print(f"audit log BROKEN: {result.problem}", markup=False)
    raise typer.Exit(10)


@audit_app.command("repair")
def audit_repair(
    reason: Annotated[
        str, typer.Option("--reason", metavar="REASON", help="Why the log may be repaired (recorded)")
    ],
    data_dir: DataDirOpt = Path("data"),
    database_url: DbUrlOpt = None,
) -> None:
    """After `audit verify` found damage and it was looked into: sign a new head over the records
    as they are, record the damage and the reason, and append the records parked meanwhile.
    Never edits a record; exit 10 if records themselves are damaged."""
    from jitgate.audit import checkpoint
    from jitgate.audit.repair import repair
    from jitgate.runtime import open_audit, open_database

    with offline():
        settings = data_settings(data_dir, database_url)
        require_existing(settings)
        audit = open_audit(settings)
        path = checkpoint.default_path(settings.data_dir)
        db = open_database(settings)
        try:
            with db.write() as conn:
                done = repair(
                    conn,
                    audit,
                    checkpoint_path=path,
                    now=SystemClock().now(),
                    actor=local_actor(),
                    reason=reason,
                )
        finally:
            db.dispose()
        if done.problem and done.head is not None:
            # Moved back on purpose, if the log was rolled back: the repair is on record.
            checkpoint.write(path, done.head)
    if done.problem:
        out.print(f"audit log repaired: {done.problem}; {done.unparked} parked records appended")
    else:
        out.print(f"audit log intact; {done.unparked} parked records appended")


@audit_app.command("export")
def audit_export(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="JITGATE_DATA_DIR",
            metavar="DIR",
            help="Export from this data directory (default: the broker named by --url, $JITGATE_URL"
            " or a login; else ./data)",
            show_default=False,
        ),
    ] = None,
    database_url: DbUrlOpt = None,
    output: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="FILE", help="File (default stdout)")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="TIME", help="Only records from this ISO time on")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Write the audit log as JSON lines, oldest first: from a data directory, or from a running
    broker like `jitgate audit` (admins and auditors get every record, others their own)."""
    with offline():
        start = iso_time(since, "--since") if since else None
    if data_dir is None and database_url is None and _broker_named(url, token):
        with api(url, token) as client:
            count = _write(output, lambda handle: _export_remote(client, handle, start))
        err.print(f"exported {count} records from {client.url}", markup=False)
        return
    from jitgate.audit.query import export
    from jitgate.runtime import open_database

    with offline():
        settings = data_settings(data_dir or Path("data"), database_url)
        require_existing(settings)
        db = open_database(settings)
        try:
            with db.read() as conn:
                count = _write(output, lambda handle: export(conn, handle, since=start))
        finally:
            db.dispose()
    err.print(f"exported {count} records", markup=False)


def _broker_named(url: str | None, token: str | None) -> bool:
    """Whether the caller pointed at a broker: a flag, ``JITGATE_URL``/``JITGATE_TOKEN``, a login."""
    from jitgate.cli.config import login_file

    named = url or token or os.environ.get("JITGATE_URL") or os.environ.get("JITGATE_TOKEN")
    return bool(named) or login_file().exists()


def _write(output: Path | None, writer: Callable[[TextIO], int]) -> int:
    """Run ``writer`` on stdout or on ``output``, which only appears once it is complete."""
    if output is None:
        return writer(sys.stdout)
    partial = output.with_name(f".{output.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            count = writer(handle)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return count


def _export_remote(client: ApiClient, handle: TextIO, since: datetime | None) -> int:
    """The broker's records in seq order, page by page, as the same lines a local export writes."""
    from jitgate.audit.canonical import canonical_json

    params: dict[str, Any] = {"newest_first": "false"}
    if since is not None:
        params["since"] = since.isoformat()
    count = 0
    for event in client.pages("/api/v1/audit", params):
        handle.write(canonical_json(event))
        handle.write("\n")
        count += 1
    return count
