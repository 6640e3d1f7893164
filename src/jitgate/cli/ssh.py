"""Client commands that deliver access: ssh, ssh-cert, ssh-config, host-cert, db.

``jitgate ssh TARGET`` is the product's promise kept on the client side: a fresh Ed25519 key made
in memory, a certificate for it minted by the broker at this moment, the system's OpenSSH client
run with both, and nothing usable left on disk afterwards. The key and certificate must be files
for ``ssh`` to read them, so they live for the length of the session in a private directory (0700,
files 0600, on ``$XDG_RUNTIME_DIR`` — a per-user tmpfs — when there is one) that is removed, the
key overwritten first, however the session ends.

``jitgate ssh-config`` prints an OpenSSH client configuration so that plain ``ssh web-1`` goes
through jitgate: a ``Match … exec`` line mints a certificate into the per-user runtime directory
just before each connection, and a ``Host`` block points ``ssh`` at it. There the short-lived key
and certificate stay in that directory between connections (each connection replaces them); the
certificate is dead within minutes and the key is trusted nowhere else. Every value the broker
sends for a stanza (name, address, port, login) is checked against ``domain/sshnames`` first: a
newline in an address would otherwise add a ``ProxyCommand`` to the user's ssh configuration.

With ``--via-gateway`` both go through the broker's SSH gateway instead (``cli/gatewayssh.py``).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer

from jitgate import errors
from jitgate.cli.client import ApiClient
from jitgate.cli.common import JsonOpt, TokenOpt, UrlOpt, api
from jitgate.cli.output import emit_json, err, fail
from jitgate.cli.signals import ProgramMissing, SessionSignal, run_child, signals_end_session
from jitgate.cli.sshsession import (
    COMMAND_NOT_FOUND,
    PSQL,
    KeyPair,
    Minted,
    checked,
    connect,
    private_directory,
    runtime_base,
    shred,
    write_credentials,
)
from jitgate.domain import sshnames


def mint(client: ApiClient, target: str, public_line: str) -> Minted:
    return Minted.from_api(
        client.post("/api/v1/ssh/certificates", {"target": target, "public_key": public_line}), target
    )


# -- ssh-config -------------------------------------------------------------------------------------


def config_word(value: str) -> str:
    """A value for ssh_config: percent signs escaped (ssh expands %-tokens), quoted if it has spaces.

    A control character (a newline above all) or a double quote cannot be held in one ssh_config
    value and is refused.
    """
    if any(c < " " or c in '"\x7f' for c in value):
        raise errors.InvalidInput(f"{value[:80]!r} cannot be written into an ssh_config line")
    value = value.replace("%", "%%")
    return f'"{value}"' if any(c.isspace() for c in value) else value


class ConfigTarget(NamedTuple):
    """A target from ``GET /api/v1/ssh/targets``, checked: the broker's answer is not trusted."""

    name: str
    address: str
    port: int
    logins: list[str]

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ConfigTarget:
        logins = data.get("logins")
        if not isinstance(logins, list) or not logins:
            raise errors.InvalidInput("the broker sent an ssh target without logins")
        return cls(
            name=checked(sshnames.check_target_name, data.get("name"), "target name"),
            address=checked(sshnames.check_address, data.get("address"), "address"),
            port=checked(sshnames.check_port, data.get("port"), "port"),
            logins=[checked(sshnames.check_login, login, "login") for login in logins],
        )


def jitgate_command() -> list[str]:
    """How to run this same jitgate again from ssh's ``Match exec`` (a shell, maybe another PATH)."""
    program = Path(sys.argv[0])
    if program.name == "jitgate" and program.exists():
        return [str(program.resolve())]
    return [sys.executable, "-m", "jitgate"]


def config_stanza(target: ConfigTarget, login: str, base: Path, url: str) -> str:
    name = target.name
    login = checked(sshnames.check_login, login, "login")
    mint_command = shlex.join(
        [*jitgate_command(), "ssh-config", "--url", url, "--mint", name, "--into", str(base)]
    )
    if any(c < " " or c in '"\x7f' for c in mint_command):
        raise errors.InvalidInput(
            "the jitgate command (its path, the broker URL or the runtime directory) contains a "
            "double quote or a control character; ssh_config cannot hold it"
        )
    files = base / name
    return "\n".join(
        [
            f"# {name}: a certificate is minted by jitgate just before each connection",
            f'Match originalhost {name} exec "{mint_command.replace("%", "%%")}"',
            f"Host {name}",
            f"    HostName {target.address}",
            f"    Port {target.port}",
            f"    User {login}",
            f"    IdentityFile {config_word(str(files))}",
            f"    CertificateFile {config_word(f'{files}-cert.pub')}",
            "    IdentitiesOnly yes",
            "    IdentityAgent none",
            f"    UserKnownHostsFile {config_word(f'{files}.known_hosts')}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "",
        ]
    )


def _forget(base: Path, target: str) -> None:
    for name in (target, f"{target}-cert.pub", f"{target}.known_hosts"):
        path = base / name
        if path.is_symlink():
            path.unlink()
        elif path.is_file():
            shred(path)


def mint_into(client: ApiClient, target: str, base: Path) -> Minted:
    """Replace ``base/TARGET{,-cert.pub,.known_hosts}`` with a fresh key, certificate and trust.

    If no certificate can be had, the earlier files are removed too: ``ssh`` then fails right after
    the error, instead of connecting with a certificate from before (from another grant, maybe).
    """
    try:
        sshnames.check_target_name(target)  # it names files in base
    except ValueError as exc:
        raise errors.InvalidInput(str(exc)) from None
    key = KeyPair.generate()
    try:
        minted = mint(client, target, key.public_line)
    except errors.JitgateError:
        _forget(base, target)
        raise
    with private_directory(base, prefix=f".{target}-") as staging:
        fresh = write_credentials(staging, target, key, minted)
        _forget(base, target)
        for path in fresh:
            path.replace(base / path.name)
    return minted


# -- commands ---------------------------------------------------------------------------------------

ViaGatewayOpt = Annotated[
    bool,
    typer.Option("--via-gateway", help="Through the broker's SSH gateway (sign in with a registered key)"),
]
LoginOpt = Annotated[
    str | None,
    typer.Option("--login", "-l", metavar="LOGIN", help="Log in as this principal (default: the first)"),
]
TargetArg = Annotated[str, typer.Argument(metavar="TARGET", help="The target's name in the policy")]
OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", metavar="FILE", help="Write the certificate here")
]


def register(app: typer.Typer) -> None:  # noqa: PLR0915 - one small function per command
    @app.command("ssh")
    def ssh_command(
        target: TargetArg,
        command: Annotated[
            list[str] | None,
            typer.Argument(metavar="COMMAND...", help="Remote command, after --", show_default=False),
        ] = None,
        login: LoginOpt = None,
        ssh_option: Annotated[
            list[str] | None,
            typer.Option(
                "--ssh-option",
                "-o",
                metavar="OPTION=VALUE",
                help="Passed to ssh as -o (repeatable); cannot weaken ours",
            ),
        ] = None,
        unsafe_accept_unknown_host: Annotated[
            bool,
            typer.Option(
                "--unsafe-accept-unknown-host",
                help="UNSAFE: connect even if the host shows no certificate from the broker's host CA",
            ),
        ] = False,
        via_gateway: ViaGatewayOpt = False,
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Connect to TARGET with a certificate minted now for a key that lives only in memory.

        With --via-gateway, through the broker's SSH gateway with a key registered for minutes.
        """
        try:
            if via_gateway:
                if unsafe_accept_unknown_host:
                    raise errors.InvalidInput(
                        "--unsafe-accept-unknown-host does not apply with --via-gateway"
                    )
                from jitgate.cli.gatewayssh import connect_via_gateway

                code = connect_via_gateway(
                    target, command=command or [], login=login, options=ssh_option or [], url=url, token=token
                )
            else:
                code = connect(
                    target,
                    command=command or [],
                    login=login,
                    options=ssh_option or [],
                    accept_unknown_host=unsafe_accept_unknown_host,
                    url=url,
                    token=token,
                )
        except ProgramMissing as exc:
            err.print(f"error: {exc.message}", markup=False)
            raise typer.Exit(COMMAND_NOT_FOUND) from None
        except errors.JitgateError as exc:
            fail(exc)
        raise typer.Exit(code)

    @app.command("ssh-cert")
    def ssh_cert(
        target: TargetArg,
        public_key: Annotated[
            Path, typer.Option("--public-key", metavar="FILE", help="Your OpenSSH public key file")
        ],
        output: OutOpt = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """A certificate for an existing key (for tools that bring their own ssh)."""
        try:
            line = public_key.read_text().strip()
        except OSError as exc:
            fail(errors.InvalidInput(f"cannot read {public_key}: {exc.strerror}"))
        with api(url, token) as client:
            found = client.post("/api/v1/ssh/certificates", {"target": target, "public_key": line})
        if output is not None:
            output.write_text(found["certificate"] + "\n")
            err.print(
                f"wrote {output}: principals {','.join(found['principals'])}, valid until "
                f"{found['valid_before']}",
                markup=False,
            )
        if as_json:
            emit_json(found)
        elif output is None:
            print(found["certificate"])

    @app.command("ssh-config")
    def ssh_config(
        targets: Annotated[
            list[str] | None,
            typer.Argument(
                metavar="TARGET...", help="Only these targets (default: every ssh target you can ask for)"
            ),
        ] = None,
        login: LoginOpt = None,
        mint_target: Annotated[
            str | None,
            typer.Option("--mint", hidden=True, help="Used by the printed config: mint for TARGET"),
        ] = None,
        into: Annotated[Path | None, typer.Option("--into", hidden=True)] = None,
        via_gateway: ViaGatewayOpt = False,
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Print ssh_config stanzas so that plain `ssh TARGET` goes through jitgate.

        Put them before any `Host *` block (ssh keeps the first value it finds), for example with
        `jitgate ssh-config > ~/.ssh/jitgate.conf` and `Include jitgate.conf` at the top of
        ~/.ssh/config. Each connection then runs `jitgate ssh-config --mint TARGET` first, which
        writes a fresh key and certificate into $XDG_RUNTIME_DIR/jitgate (0700).

        With --via-gateway the stanzas point at the broker's SSH gateway instead, where you sign
        in with a key registered by `jitgate keys add`; nothing is minted on your machine.
        """
        if mint_target is not None:
            try:
                with signals_end_session(), api(url, token) as client:
                    mint_into(client, mint_target, runtime_base(into))
            except SessionSignal as stopped:
                raise typer.Exit(stopped.exit_code) from None
            return
        with api(url, token) as client:
            found = [ConfigTarget.from_api(t) for t in client.get("/api/v1/ssh/targets")]
            known = {t.name: t for t in found}
            chosen = []
            for name in targets or list(known):
                if name not in known:
                    raise errors.NotFound(f"no ssh target {name!r} you can ask for")
                logins = known[name].logins
                user = login or logins[0]
                if user not in logins:
                    raise errors.InvalidInput(f"login {user!r} is not offered on {name}")
                chosen.append((known[name], user))
            if via_gateway:
                from jitgate.cli.gatewayssh import Gateway, gateway_config

                text = gateway_config(Gateway.from_api(client.get("/api/v1/gateway")), chosen, client.url)
            else:
                base = runtime_base()
                stanzas = [config_stanza(target, user, base, client.url) for target, user in chosen]
                text = f"# jitgate ssh-config for {client.url}: Include this before any `Host *` block\n"
                text += "\n".join(stanzas)
        print(text, end="")

    @app.command("host-cert")
    def host_cert(
        public_key: Annotated[
            Path,
            typer.Option("--public-key", metavar="FILE", help="The host's public key (sshd HostKey .pub)"),
        ],
        principal: Annotated[
            list[str],
            typer.Option("--principal", metavar="NAME", help="A name or address clients use (repeatable)"),
        ],
        validity: Annotated[
            str, typer.Option("--validity", metavar="DURATION", help="How long, e.g. 52w")
        ] = "52w",
        output: OutOpt = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """A host certificate from the broker's host CA, for sshd's HostCertificate (admins)."""
        try:
            line = public_key.read_text().strip()
        except OSError as exc:
            fail(errors.InvalidInput(f"cannot read {public_key}: {exc.strerror}"))
        with api(url, token) as client:
            found = client.post(
                "/api/v1/ssh/host-certificates",
                {"public_key": line, "principals": principal, "validity": validity},
            )
        if output is None:
            print(found["certificate"])
        else:
            output.write_text(found["certificate"] + "\n")
            err.print(f"wrote {output}; valid until {found['valid_before']}", markup=False)

    @app.command("db")
    def db(
        target: TargetArg,
        psql_args: Annotated[
            list[str] | None,
            typer.Argument(
                metavar="PSQL-ARG...", help="With --exec: arguments for psql, after --", show_default=False
            ),
        ] = None,
        run_psql: Annotated[
            bool, typer.Option("--exec", help="Run psql with the login (passed in its environment)")
        ] = False,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """A fresh database login under your grant on TARGET: PG* variables, DSN, or psql itself."""
        with api(url, token) as client:
            found = client.post("/api/v1/db/credentials", {"target": target})
        variables = pg_environment(found)
        if run_psql:
            # The password goes through the environment, never argv (other users can read argv).
            try:
                code = run_child([PSQL, *(psql_args or [])], env={**os.environ, **variables})
            except ProgramMissing as exc:
                err.print(f"error: {exc.message}", markup=False)
                raise typer.Exit(COMMAND_NOT_FOUND) from None
            raise typer.Exit(code)
        if as_json:
            emit_json(
                {
                    "user": found["user"],
                    "password": found["password"],
                    "dsn": found["dsn"],
                    "expires_at": found["expires_at"],
                    "valid_before": found.get("valid_before"),
                    "grant_id": found["grant_id"],
                }
            )
            return
        for name, value in variables.items():
            print(f"export {name}={shlex.quote(value)}")
        print(f"# DSN: {found['dsn']}")
        print(f"# valid until {found['expires_at']} (grant {found['grant_id']})")


def pg_environment(found: dict[str, Any]) -> dict[str, str]:
    """libpq's environment variables for a login returned by ``POST /api/v1/db/credentials``."""
    variables = {
        "PGHOST": found.get("host"),
        "PGPORT": found.get("port"),
        "PGDATABASE": found.get("database"),
        "PGUSER": found["user"],
        "PGPASSWORD": found["password"],
    }
    return {name: str(value) for name, value in variables.items() if value not in (None, "")}
