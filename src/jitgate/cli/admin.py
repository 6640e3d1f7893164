"""Commands that run the broker or work on its data directory: server, demo, init, policy, ca."""

from __future__ import annotations

import json
import logging
import os
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer

from jitgate import errors
from jitgate.cli.common import JsonOpt, TokenOpt, UrlOpt, api, offline
from jitgate.cli.datadir import DataDirOpt, DbUrlOpt, data_settings, require_existing
from jitgate.cli.output import emit_json, err, out
from jitgate.clock import SystemClock
from jitgate.domain.identity import SYSTEM, Identity
from jitgate.policy.decision import explain
from jitgate.policy.loader import load_policy
from jitgate.settings import Settings

policy_app = typer.Typer(help="Check and explain policy files.", no_args_is_help=True)
ca_app = typer.Typer(help="The SSH certificate authorities.", no_args_is_help=True)


def _serve(settings: Settings, access_log: bool) -> None:
    import uvicorn

    from jitgate.api.app import create_app, settle_heap
    from jitgate.api.serving import process_bounds, server_config
    from jitgate.api.worker import LOG_FORMAT
    from jitgate.runtime import build_runtime

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    with offline():
        # Also with several workers: a bad policy or database fails here, once, with one line.
        bounds = process_bounds(settings)
        gateway = settings.gateway_host_port
        if gateway is not None:
            from jitgate.api.worker import check_port_free

            check_port_free(*gateway)
        runtime = build_runtime(settings)
        make_cas(settings)  # so that `jitgate ca show --data-dir` works from the first start
    host, port = settings.host_port
    if settings.workers > 1:
        from jitgate.api.worker import serve

        runtime.close()
        with offline():
            code = serve(settings, _worker_environment(settings), access_log)
        raise typer.Exit(code)
    try:
        app = create_app(runtime)
        settle_heap()
        config = server_config(app, bounds, access_log=access_log, host=host, port=port)
        uvicorn.Server(config).run()
    finally:
        runtime.ctx.db.dispose()


def make_cas(settings: Settings) -> list[str]:
    """Create the user and host CAs if missing; the user CA's lines (for TrustedUserCAKeys)."""
    from jitgate.providers.ssh.ca import CaKind, CaStore

    passphrase = settings.ca_passphrase.get_secret_value() if settings.ca_passphrase else None
    store = CaStore(settings.data_dir / "ca", passphrase)
    now = SystemClock().now()
    store.public_lines(CaKind.HOST, now)
    return store.public_lines(CaKind.USER, now)


def _worker_environment(settings: Settings) -> dict[str, str]:
    """The settings given as flags, for worker processes that read theirs from the environment."""
    found = {
        "JITGATE_DATA_DIR": str(settings.data_dir.resolve()),
        "JITGATE_LISTEN": settings.listen,
        "JITGATE_WORKERS": str(settings.workers),
    }
    if settings.policy_file is not None:
        found["JITGATE_POLICY_FILE"] = str(settings.policy_file.resolve())
    if settings.database_url is not None:
        found["JITGATE_DATABASE_URL"] = settings.database_url
    if settings.gateway_listen is not None:
        found["JITGATE_GATEWAY_LISTEN"] = settings.gateway_listen
    return found


def register(app: typer.Typer) -> None:  # noqa: PLR0915 - one small function per command
    app.add_typer(policy_app, name="policy")
    app.add_typer(ca_app, name="ca")

    @app.command()
    def server(
        data_dir: DataDirOpt = Path("data"),
        policy: Annotated[
            Path, typer.Option("--policy", envvar="JITGATE_POLICY_FILE", metavar="FILE", help="Policy file")
        ] = Path("policy.yaml"),
        # listen, workers and gateway_listen are checked by the settings, which read JITGATE_*
        # themselves when no flag is given, so that a bad value is named the way it was set.
        listen: Annotated[
            str | None,
            typer.Option(
                "--listen",
                metavar="HOST:PORT",
                help="Where the API listens (default 127.0.0.1:8080, or $JITGATE_LISTEN)",
                show_default=False,
            ),
        ] = None,
        database_url: DbUrlOpt = None,
        access_log: Annotated[bool, typer.Option(help="Log every HTTP request")] = True,
        workers: Annotated[
            str | None,
            typer.Option(
                "--workers",
                metavar="N",
                help="Worker processes, 1 to 64, one per core (default 1, or $JITGATE_WORKERS)",
                show_default=False,
            ),
        ] = None,
        gateway_listen: Annotated[
            str | None,
            typer.Option(
                "--gateway-listen",
                metavar="HOST:PORT",
                help="Where the SSH gateway listens (off unless given, or $JITGATE_GATEWAY_LISTEN)",
            ),
        ] = None,
    ) -> None:
        """Run the broker: API, scheduler (expiry, revocation retries), SSH CA and, if asked, SSH gateway."""
        with offline():
            settings = data_settings(
                data_dir,
                database_url,
                policy_file=policy,
                listen=listen,
                workers=workers,
                gateway_listen=gateway_listen,
            )
        _serve(settings, access_log)

    @app.command()
    def init(data_dir: DataDirOpt = Path("data"), database_url: DbUrlOpt = None) -> None:
        """Create the data directory, database schema, audit key and SSH CAs."""
        from jitgate.runtime import open_audit, open_database

        with offline():
            settings = data_settings(data_dir, database_url)
            db = open_database(settings)
            open_audit(settings)
            lines = make_cas(settings)
            db.dispose()
        out.print(f"initialised {data_dir}; user CA for TrustedUserCAKeys:")
        for line in lines:
            print(line)

    @app.command()
    def demo(
        data_dir: DataDirOpt = Path("demo-data"),
        listen: Annotated[
            str, typer.Option("--listen", metavar="HOST:PORT", help="Where the demo broker listens")
        ] = "127.0.0.1:8080",
        gateway_listen: Annotated[
            str | None,
            typer.Option(
                "--gateway-listen",
                metavar="HOST:PORT",
                help="Where the SSH gateway listens, e.g. 127.0.0.1:2200 (off unless given)",
            ),
        ] = None,
    ) -> None:
        """Start a broker with the demo policy and demo users, and print what to try."""
        from jitgate.cli.demowalk import DemoPlace, demo_policy_text, walkthrough
        from jitgate.runtime import checkpoint_now, open_audit, open_database
        from jitgate.workflow.users import add_user

        place = DemoPlace.here(data_dir, listen, gateway_listen)
        policy_path = data_dir / "demo-policy.yaml"
        tokens_path = data_dir / "demo-tokens.json"
        with offline():
            settings = data_settings(
                data_dir, None, policy_file=policy_path, listen=listen, gateway_listen=gateway_listen
            )
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not policy_path.exists():
                packaged = (files("jitgate") / "demo" / "policy.yaml").read_text()
                policy_path.write_text(demo_policy_text(packaged, None if place.root else place.user))
            tokens: dict[str, str] = json.loads(tokens_path.read_text()) if tokens_path.exists() else {}
            if not tokens:
                db = open_database(settings)
                audit = open_audit(settings)
                people = {
                    "alice": ["engineers"],
                    "bob": ["sre-leads", "engineers"],
                    "carol": ["engineers", "oncall"],
                    "dave": ["analysts"],
                }
                for name, groups in people.items():
                    _, tokens[name] = add_user(
                        db, audit, SystemClock(), actor=SYSTEM.name, name=name, groups=groups
                    )
                _, tokens["admin"] = add_user(
                    db, audit, SystemClock(), actor=SYSTEM.name, name="admin", groups=["admins"], admin=True
                )
                checkpoint_now(settings, db, audit)
                db.dispose()
                fd = os.open(tokens_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as handle:
                    json.dump(tokens, handle, indent=2)
        with offline():
            text = walkthrough(load_policy(policy_path), place, os.environ)
        err.print(text, markup=False, highlight=False)
        _serve(settings, access_log=True)

    @policy_app.command("check")
    def policy_check(
        file: Annotated[Path, typer.Argument(metavar="FILE", help="The policy file to check")],
    ) -> None:
        """Validate a policy file; every problem as FILE:LINE: what."""
        from jitgate.providers.base import ProviderContext
        from jitgate.providers.registry import discover, validate_policy

        try:
            found = load_policy(file)
        except errors.PolicyFileError as exc:
            for problem in exc.problems:
                err.print(problem, markup=False)
            raise typer.Exit(3) from None
        context = ProviderContext(data_dir=Path(), environ=os.environ, clock=SystemClock())
        loaded = discover(context, {t.kind for t in found.targets})
        problems = [*loaded.problems, *validate_policy(found, loaded.providers)]
        if problems:
            for problem in problems:
                err.print(f"{file.name}: {problem}", markup=False)
            raise typer.Exit(3)
        out.print(f"{file}: ok ({len(found.targets)} targets, {len(found.roles)} roles)")

    @policy_app.command("explain")
    def policy_explain(
        user: Annotated[str, typer.Option("--user", metavar="USER", help="Who")],
        role: Annotated[str, typer.Option("--role", metavar="ROLE", help="Which role")],
        policy: Annotated[
            Path, typer.Option("--policy", envvar="JITGATE_POLICY_FILE", metavar="FILE", help="Policy file")
        ] = Path("policy.yaml"),
        group: Annotated[
            list[str] | None,
            typer.Option("--group", "-g", metavar="GROUP", help="A group of the user (repeatable)"),
        ] = None,
        data_dir: Annotated[
            Path | None,
            typer.Option("--data-dir", metavar="DIR", help="Look the user's groups up in this broker"),
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Why USER may or may not request ROLE, and who could approve it."""
        with offline():
            found = load_policy(policy)
            groups = set(group or [])
            if data_dir is not None:
                from jitgate.runtime import open_database
                from jitgate.store import queries as q

                settings = data_settings(data_dir, None)
                require_existing(settings)  # look up, never create a broker here
                db = open_database(settings)
                with db.read() as conn:
                    known = q.get_identity(conn, user)
                db.dispose()
                if known is None:
                    raise errors.NotFound(f"no user {user} in {data_dir}")
                groups |= set(known.groups)
            result = explain(found, Identity(name=user, groups=frozenset(groups)), role)
        if as_json:
            emit_json(
                {
                    "user": user,
                    "role": role,
                    "may_request": result.may_request,
                    "lines": result.lines,
                    "approvers": result.approvers,
                }
            )
        else:
            for line in result.lines:
                out.print(line, markup=False, highlight=False)
        if not result.may_request:
            raise typer.Exit(5)

    @ca_app.command("show")
    def ca_show(
        kind: Annotated[str, typer.Option("--kind", metavar="user|host", help="Which CA")] = "user",
        data_dir: Annotated[
            Path | None,
            typer.Option(
                "--data-dir", metavar="DIR", help="Read offline from this data dir (never creates a CA)"
            ),
        ] = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """The CA public key lines (for sshd's TrustedUserCAKeys, or known_hosts @cert-authority)."""
        if kind not in {"user", "host"}:
            from jitgate.cli.output import fail

            fail(errors.InvalidInput("--kind is user or host"))
        if data_dir is not None:
            from jitgate.providers.ssh.ca import CaKind, CaStore

            # Only the public index is read: no passphrase needed, and never a CA created here.
            store = CaStore(data_dir / "ca", create=False)
            with offline():
                try:
                    lines = store.public_lines(CaKind(kind), SystemClock().now())
                except errors.NotFound as exc:
                    hint = f"start the broker on it once, or run jitgate init --data-dir {data_dir}"
                    raise errors.NotFound(f"{exc.message}; {hint}") from None
        else:
            with api(url, token) as client:
                lines = client.get("/api/v1/ca/ssh")[kind]
        for line in lines:
            print(line)

    @ca_app.command("rotate")
    def ca_rotate(
        kind: Annotated[str, typer.Option("--kind", metavar="user|host", help="Which CA")] = "user",
        overlap: Annotated[
            str, typer.Option("--overlap", metavar="DURATION", help="How long the old CA stays trusted")
        ] = "24h",
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Create a new CA key; the old one stays published for the overlap (admins)."""
        with api(url, token) as client:
            info = client.post(f"/api/v1/ca/ssh/rotate?kind={kind}&overlap={overlap}")
        if as_json:
            emit_json(info)
        else:
            out.print(
                f"new {kind} CA {info.get('fingerprint', '')}; the previous one stays trusted for {overlap}"
            )

    @ca_app.command("krl")
    def ca_krl(
        output: Annotated[
            Path,
            typer.Option("--out", "-o", metavar="FILE", help="Where to write the KRL (sshd RevokedKeys)"),
        ],
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Fetch the key revocation list of certificates revoked before their end."""
        with api(url, token) as client:
            blob = client.get("/api/v1/ca/ssh/krl")
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_bytes(blob)
        tmp.replace(output)
        out.print(f"wrote {len(blob)} bytes to {output}")
