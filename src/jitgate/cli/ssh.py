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
certificate is dead within minutes and the key is trusted nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from jitgate import errors
from jitgate.cli.client import ApiClient
from jitgate.cli.common import JsonOpt, TokenOpt, UrlOpt, api
from jitgate.cli.output import emit_json, err, fail

SSH = "ssh"
PSQL = "psql"
COMMAND_NOT_FOUND = 127
_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# -- the private directory ------------------------------------------------------------------------


class ProgramMissing(errors.JitgateError):
    """The local program jitgate hands over to (ssh, psql) is not installed."""

    code = "program_missing"


def runtime_base(path: Path | None = None) -> Path:
    """The per-user directory for jitgate's short-lived files: ``$XDG_RUNTIME_DIR/jitgate``.

    Without ``XDG_RUNTIME_DIR`` it is ``jitgate-UID`` in the system's temporary directory. Either
    way it is created 0700 and refused if it is anything but a directory of ours that nobody else
    can enter: in a shared ``/tmp`` someone else may have made it first.
    """
    if path is None:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        path = Path(xdg) / "jitgate" if xdg else Path(tempfile.gettempdir()) / f"jitgate-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    try:
        info = path.lstat()
    except OSError as exc:
        raise errors.InvalidInput(f"cannot use {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise errors.InvalidInput(f"{path} must be a directory owned by you with mode 0700")
    return path


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _shred(path: Path) -> None:
    """Overwrite a file with zeros before unlinking it, so its bytes do not linger in free blocks."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        os.write(fd, b"\0" * size)
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()


@contextlib.contextmanager
def private_directory(base: Path | None = None, prefix: str = "ssh-") -> Iterator[Path]:
    """A fresh 0700 directory in ``base`` that is gone when the block ends, whatever ends it."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=runtime_base(base)))
    try:
        yield directory
    finally:
        for entry in directory.iterdir():
            if entry.is_file() and not entry.is_symlink():
                _shred(entry)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key made in memory; the private half is written only where ``ssh`` must read it."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_line(self) -> str:
        return self.private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()

    def private_bytes(self) -> bytes:
        return self.private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())


@dataclass(frozen=True)
class Minted:
    """A certificate as the broker returned it, with where and as whom to connect."""

    certificate: str
    principals: list[str]
    address: str
    port: int
    known_hosts: list[str]
    grant_id: str
    valid_before: str

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Minted:
        target = data["target"]
        if not target.get("address"):
            raise errors.InvalidInput(f"target {target.get('name')} has no address")
        return cls(
            certificate=data["certificate"],
            principals=list(data["principals"]),
            address=str(target["address"]),
            port=int(target["port"]),
            known_hosts=list(data.get("known_hosts") or []),
            grant_id=str(data["grant_id"]),
            valid_before=str(data["valid_before"]),
        )

    def login(self, wanted: str | None) -> str:
        if wanted is None:
            return self.principals[0]
        if wanted not in self.principals:
            raise errors.InvalidInput(
                f"login {wanted!r} is not in the certificate; choose one of {', '.join(self.principals)}"
            )
        return wanted


def mint(client: ApiClient, target: str, public_line: str) -> Minted:
    return Minted.from_api(
        client.post("/api/v1/ssh/certificates", {"target": target, "public_key": public_line})
    )


def write_credentials(directory: Path, stem: str, key: KeyPair, minted: Minted) -> tuple[Path, Path, Path]:
    """Key (0600), certificate and known_hosts as ``ssh -i`` and ``UserKnownHostsFile`` want them."""
    key_file, cert_file, hosts_file = (
        directory / stem,
        directory / f"{stem}-cert.pub",
        directory / f"{stem}.known_hosts",
    )
    _write_private(key_file, key.private_bytes())
    _write_private(cert_file, (minted.certificate + "\n").encode())
    _write_private(hosts_file, "".join(f"{line}\n" for line in minted.known_hosts).encode())
    return key_file, cert_file, hosts_file


def ssh_argv(
    *,
    key_file: Path,
    cert_file: Path,
    known_hosts: Path,
    login: str,
    minted: Minted,
    options: Sequence[str],
    command: Sequence[str],
    accept_unknown_host: bool,
) -> list[str]:
    # ssh keeps the first value it sees for an option: ours come first and cannot be overridden.
    argv = [
        SSH,
        "-i", str(key_file),
        "-o", f"CertificateFile={cert_file}",
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", f"StrictHostKeyChecking={'accept-new' if accept_unknown_host else 'yes'}",
        "-o", "GlobalKnownHostsFile=/dev/null",
    ]  # fmt: skip
    for option in options:
        argv += ["-o", option]
    argv += ["-p", str(minted.port), "--", f"{login}@{minted.address}", *command]
    return argv


def run_child(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run ``argv`` in the foreground and return its exit status (128+N when killed by signal N).

    Ctrl-C reaches the child from the terminal; a signal sent to us alone is passed on to it. We
    stay until it has ended, so the caller's clean-up runs after the child stopped using the files.
    """
    try:
        child = subprocess.Popen(argv, env=env)
    except FileNotFoundError:
        raise ProgramMissing(f"{argv[0]} is not installed or not on PATH") from None

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED_SIGNALS}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:
            child.kill()
            child.wait()
    return 128 - code if code < 0 else code


# -- ssh-config -------------------------------------------------------------------------------------


def _config_word(value: str) -> str:
    """A value for ssh_config: percent signs escaped (ssh expands %-tokens), quoted if it has spaces."""
    value = value.replace("%", "%%")
    return f'"{value}"' if any(c.isspace() for c in value) else value


def jitgate_command() -> list[str]:
    """How to run this same jitgate again from ssh's ``Match exec`` (a shell, maybe another PATH)."""
    program = Path(sys.argv[0])
    if program.name == "jitgate" and program.exists():
        return [str(program.resolve())]
    return [sys.executable, "-m", "jitgate"]


def config_stanza(target: dict[str, Any], login: str, base: Path, url: str) -> str:
    name = target["name"]
    mint_command = shlex.join(
        [*jitgate_command(), "ssh-config", "--url", url, "--mint", name, "--into", str(base)]
    )
    if '"' in mint_command:
        raise errors.InvalidInput(
            "the jitgate command path contains a double quote; ssh_config cannot hold it"
        )
    files = base / name
    return "\n".join(
        [
            f"# {name}: a certificate is minted by jitgate just before each connection",
            f'Match originalhost {name} exec "{mint_command.replace("%", "%%")}"',
            f"Host {name}",
            f"    HostName {target['address']}",
            f"    Port {target['port']}",
            f"    User {login}",
            f"    IdentityFile {_config_word(str(files))}",
            f"    CertificateFile {_config_word(f'{files}-cert.pub')}",
            "    IdentitiesOnly yes",
            "    IdentityAgent none",
            f"    UserKnownHostsFile {_config_word(f'{files}.known_hosts')}",
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
            _shred(path)


def mint_into(client: ApiClient, target: str, base: Path) -> Minted:
    """Replace ``base/TARGET{,-cert.pub,.known_hosts}`` with a fresh key, certificate and trust.

    If no certificate can be had, the earlier files are removed too: ``ssh`` then fails right after
    the error, instead of connecting with a certificate from before (from another grant, maybe).
    """
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

LoginOpt = Annotated[
    str | None, typer.Option("--login", "-l", help="Log in as this principal (default: the first)")
]


def register(app: typer.Typer) -> None:  # noqa: PLR0915 - one small function per command
    @app.command("ssh")
    def ssh_command(
        target: str,
        command: Annotated[
            list[str] | None, typer.Argument(help="Remote command, after --", show_default=False)
        ] = None,
        login: LoginOpt = None,
        ssh_option: Annotated[
            list[str] | None,
            typer.Option("--ssh-option", "-o", help="Passed to ssh as -o (repeatable); cannot weaken ours"),
        ] = None,
        unsafe_accept_unknown_host: Annotated[
            bool,
            typer.Option(
                "--unsafe-accept-unknown-host",
                help="UNSAFE: connect even if the host shows no certificate from the broker's host CA",
            ),
        ] = False,
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Connect to TARGET with a certificate minted now for a key that lives only in memory."""
        key = KeyPair.generate()
        with api(url, token) as client:
            minted = mint(client, target, key.public_line)
            user = minted.login(login)
        if unsafe_accept_unknown_host:
            err.print(
                "warning: not checking the host's identity (--unsafe-accept-unknown-host)", markup=False
            )
        code = 1
        try:
            with private_directory() as directory:
                key_file, cert_file, hosts = write_credentials(directory, "id_ed25519", key, minted)
                argv = ssh_argv(
                    key_file=key_file,
                    cert_file=cert_file,
                    known_hosts=hosts,
                    login=user,
                    minted=minted,
                    options=ssh_option or [],
                    command=command or [],
                    accept_unknown_host=unsafe_accept_unknown_host,
                )
                code = run_child(argv)
        except ProgramMissing as exc:
            err.print(f"error: {exc.message}", markup=False)
            raise typer.Exit(COMMAND_NOT_FOUND) from None
        except errors.JitgateError as exc:
            fail(exc)
        raise typer.Exit(code)

    @app.command("ssh-cert")
    def ssh_cert(
        target: str,
        public_key: Annotated[Path, typer.Option("--public-key", help="Your OpenSSH public key file")],
        output: Annotated[Path | None, typer.Option("--out", "-o", help="Write the certificate here")] = None,
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
            typer.Argument(help="Only these targets (default: every ssh target you can ask for)"),
        ] = None,
        login: LoginOpt = None,
        mint_target: Annotated[
            str | None,
            typer.Option("--mint", hidden=True, help="Used by the printed config: mint for TARGET"),
        ] = None,
        into: Annotated[Path | None, typer.Option("--into", hidden=True)] = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Print ssh_config stanzas so that plain `ssh TARGET` goes through jitgate.

        Put them before any `Host *` block (ssh keeps the first value it finds), for example with
        `jitgate ssh-config > ~/.ssh/jitgate.conf` and `Include jitgate.conf` at the top of
        ~/.ssh/config. Each connection then runs `jitgate ssh-config --mint TARGET` first, which
        writes a fresh key and certificate into $XDG_RUNTIME_DIR/jitgate (0700).
        """
        if mint_target is not None:
            with api(url, token) as client:
                mint_into(client, mint_target, runtime_base(into))
            return
        with api(url, token) as client:
            found = client.get("/api/v1/ssh/targets")
            base = runtime_base()
            known = {t["name"]: t for t in found}
            chosen = targets or list(known)
            stanzas = []
            for name in chosen:
                if name not in known:
                    raise errors.NotFound(f"no ssh target {name!r} you can ask for")
                logins = known[name]["logins"]
                user = login or logins[0]
                if user not in logins:
                    raise errors.InvalidInput(f"login {user!r} is not offered on {name}")
                stanzas.append(config_stanza(known[name], user, base, client.url))
        print(f"# jitgate ssh-config for {client.url}: Include this before any `Host *` block")
        print("\n".join(stanzas), end="")

    @app.command("host-cert")
    def host_cert(
        public_key: Annotated[
            Path, typer.Option("--public-key", help="The host's public key (sshd HostKey .pub)")
        ],
        principal: Annotated[
            list[str], typer.Option("--principal", help="A name or address clients use (repeatable)")
        ],
        validity: Annotated[str, typer.Option("--validity", help="How long, e.g. 52w")] = "52w",
        output: Annotated[Path | None, typer.Option("--out", "-o", help="Write the certificate here")] = None,
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
        target: str,
        psql_args: Annotated[
            list[str] | None,
            typer.Argument(help="With --exec: arguments for psql, after --", show_default=False),
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
