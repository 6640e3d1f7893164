"""The ``audit`` commands: list through the API; verify, repair and export on the data directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from jitgate.cli.common import JsonOpt, TokenOpt, UrlOpt, api, iso_time, offline
from jitgate.cli.datadir import DataDirOpt, DbUrlOpt, data_settings, local_actor, require_existing
from jitgate.cli.output import emit_json, err, out, table, when
from jitgate.clock import SystemClock

audit_app = typer.Typer(help="The tamper-evident audit log.", invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


@audit_app.callback()
def audit_list(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", help="Only events by this actor")] = None,
    role: Annotated[str | None, typer.Option("--role")] = None,
    action: Annotated[str | None, typer.Option("--action")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO time, e.g. 2026-11-01T00:00Z")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 100,
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
        str | None, typer.Option("--public-key", help="Verify with this Ed25519 public key (hex) only")
    ] = None,
    witness: Annotated[
        list[Path] | None,
        typer.Option("--witness", help="A witness file of signed heads the chain must contain (repeatable)"),
    ] = None,
    recordings: Annotated[
        Path | None,
        typer.Option("--recordings", help="The gateway's recordings directory (default from the settings)"),
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
    reason: Annotated[str, typer.Option("--reason", help="Why the log may be repaired (recorded)")],
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
    data_dir: DataDirOpt = Path("data"),
    database_url: DbUrlOpt = None,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="File (default stdout)")] = None,
    since: Annotated[str | None, typer.Option("--since")] = None,
) -> None:
    """Write the audit log as JSON lines."""
    from jitgate.audit.query import export
    from jitgate.runtime import open_database

    with offline():
        settings = data_settings(data_dir, database_url)
        require_existing(settings)
        start = iso_time(since, "--since") if since else None
        db = open_database(settings)
        with db.read() as conn:
            if output is None:
                count = export(conn, sys.stdout, since=start)
            else:
                with output.open("w", encoding="utf-8") as handle:
                    count = export(conn, handle, since=start)
        db.dispose()
    err.print(f"exported {count} records", markup=False)
