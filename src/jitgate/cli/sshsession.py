"""One ``jitgate ssh`` session: a fresh key, a certificate minted for it now, the system's OpenSSH
client run with both from a private directory that is gone afterwards.

Only the standard library is imported up front, so that ``jitgate ssh`` starts in a fraction of the
time the full command line takes (see ``cli/entry.py``). The session key is made by ``ssh-keygen``
straight into the private directory, the only place its private half is ever written (``ssh`` has
to read it from there), while this process goes on loading the HTTP client. From the start of a
session to its end SIGINT, SIGTERM and SIGHUP remove that directory too (``cli/signals.py``), and
nothing the broker answers reaches ``ssh``'s arguments or a file unchecked (``Minted.from_api``).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from jitgate import errors
from jitgate.cli.config import resolve
from jitgate.cli.signals import ProgramMissing, ended_by_signals, run_child
from jitgate.domain import sshnames

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SSH = "ssh"
SSH_KEYGEN = "ssh-keygen"
PSQL = "psql"
COMMAND_NOT_FOUND = 127
T = TypeVar("T")


# -- the private directory ------------------------------------------------------------------------


def runtime_base(path: Path | None = None) -> Path:
    """The per-user directory for jitgate's short-lived files: ``$XDG_RUNTIME_DIR/jitgate``.

    Without ``XDG_RUNTIME_DIR`` it is ``jitgate-UID`` in the system's temporary directory. Either
    way it is created 0700 and refused if it is anything but a directory of ours that nobody else
    can enter: in a shared ``/tmp`` someone else may have made it first.
    """
    if path is None:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg:
            path = Path(xdg) / "jitgate"
        else:
            import tempfile

            path = Path(tempfile.gettempdir()) / f"jitgate-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    try:
        info = path.lstat()
    except OSError as exc:
        raise errors.InvalidInput(f"cannot use {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise errors.InvalidInput(f"{path} must be a directory owned by you with mode 0700")
    return path


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def shred(path: Path) -> None:
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


def _remove(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        for entry in directory.iterdir():
            if entry.is_file() and not entry.is_symlink():
                shred(entry)
    import shutil

    shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def private_directory(base: Path | None = None, prefix: str = "ssh-") -> Iterator[Path]:
    """A fresh 0700 directory in ``base`` that is gone when the block ends, whatever ends it.

    Its name is chosen before it is made, so an interruption at any moment finds it to remove; an
    interruption of the removal itself (the signal that ends the session, landing there) is
    followed by the removal again (``signals_end_session`` raises only once).
    """
    directory = runtime_base(base) / f"{prefix}{os.urandom(8).hex()}"
    try:
        directory.mkdir(mode=0o700)
        yield directory
    finally:
        try:
            _remove(directory)
        except BaseException:
            _remove(directory)
            raise


class KeyPair(NamedTuple):
    """An Ed25519 key made in memory; the private half is written only where ``ssh`` must read it."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> KeyPair:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @property
    def public_line(self) -> str:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self.private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()

    def private_bytes(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        return self.private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())


class SessionKey:
    """A key ``ssh-keygen`` is making in ``directory``; ``public_line()`` waits for it."""

    def __init__(self, directory: Path, stem: str) -> None:
        self.file = directory / stem
        argv = [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "jitgate session", "-f", str(self.file)]
        try:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except FileNotFoundError:
            raise ProgramMissing(f"{SSH_KEYGEN} is not installed or not on PATH") from None

    def public_line(self) -> str:
        _, problem = self._process.communicate(timeout=60)
        public = self.file.with_name(self.file.name + ".pub")
        if self._process.returncode != 0 or not public.is_file():
            why = problem.decode(errors="replace").strip().splitlines()[:1] or ["no key written"]
            raise errors.JitgateError(f"{SSH_KEYGEN} could not make a session key: {why[0][:200]}")
        line = public.read_text().strip()
        public.unlink()  # the certificate stands in for it; keep the directory to what ssh uses
        return line

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def one_line(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or any(c < " " or c == "\x7f" for c in value):
        raise errors.InvalidInput(f"the broker sent {what} that is not one line of text")
    return value


def checked(check: Callable[[object], T], value: object, what: str) -> T:
    """``value`` if it has the shape ``check`` wants, else a one-line refusal naming ``what``."""
    try:
        return check(value)
    except ValueError as exc:
        raise errors.InvalidInput(f"the broker sent a bad {what}: {exc}") from None


class Minted(NamedTuple):
    """A certificate as the broker returned it, with where and as whom to connect.

    Nothing the broker sends reaches an ``ssh`` argument or a file unchecked: the address and port
    must have the shapes the policy allows, and every principal must be bound to the target asked
    for (a certificate for another target is of no use here, and a sign of a confused broker).
    """

    certificate: str
    logins: list[str]
    address: str
    port: int
    known_hosts: list[str]
    grant_id: str
    valid_before: str

    @classmethod
    def from_api(cls, data: dict[str, Any], target: str) -> Minted:
        where = data["target"]
        if not where.get("address"):
            raise errors.InvalidInput(f"target {target} has no address")
        if where.get("name") != target:
            raise errors.InvalidInput(f"the broker answered for another target than {target}")
        principals = data["principals"]
        if not isinstance(principals, list) or not principals:
            raise errors.InvalidInput("the broker sent a certificate without principals")
        return cls(
            certificate=one_line(data["certificate"], "a certificate"),
            logins=[checked(lambda p: sshnames.login_of(str(p), target), p, "principal") for p in principals],
            address=checked(sshnames.check_address, where["address"], "address"),
            port=checked(sshnames.check_port, where["port"], "port"),
            known_hosts=[one_line(line, "a known_hosts line") for line in data.get("known_hosts") or []],
            grant_id=str(data["grant_id"]),
            valid_before=str(data["valid_before"]),
        )

    def login(self, wanted: str | None) -> str:
        if wanted is None:
            return self.logins[0]
        if wanted not in self.logins:
            raise errors.InvalidInput(
                f"login {wanted!r} is not in the certificate; choose one of {', '.join(self.logins)}"
            )
        return wanted


def write_credentials(directory: Path, stem: str, key: KeyPair, minted: Minted) -> tuple[Path, Path, Path]:
    """Key (0600), certificate and known_hosts as ``ssh -i`` and ``UserKnownHostsFile`` want them."""
    key_file = directory / stem
    write_private(key_file, key.private_bytes())
    return (key_file, *write_certificate(directory, stem, minted))


def write_certificate(directory: Path, stem: str, minted: Minted) -> tuple[Path, Path]:
    """Certificate and known_hosts next to the key ``directory/stem``."""
    cert_file, hosts_file = directory / f"{stem}-cert.pub", directory / f"{stem}.known_hosts"
    write_private(cert_file, (minted.certificate + "\n").encode())
    write_private(hosts_file, "".join(f"{line}\n" for line in minted.known_hosts).encode())
    return cert_file, hosts_file


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


def post_json(url: str, token: str | None, path: str, body: dict[str, Any], timeout: float = 30) -> Any:
    """POST to the broker; an error response becomes the matching ``JitgateError``."""
    return broker_json(url, token, "POST", path, body, timeout)


def broker_json(
    url: str,
    token: str | None,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    timeout: float = 30,
) -> Any:
    """Call the broker's API; an error response becomes the matching ``JitgateError``."""
    # Not at the top: ``connect`` loads it while ssh-keygen runs.
    from jitgate.cli.brokerhttp import exchange

    reply = exchange(url, token, method, path, json_body=body, timeout=timeout)
    return json.loads(reply.content or b"null")


def connect(
    target: str,
    *,
    command: Sequence[str] = (),
    login: str | None = None,
    options: Sequence[str] = (),
    accept_unknown_host: bool = False,
    url: str | None = None,
    token: str | None = None,
) -> int:
    """Mint, connect, clean up; returns ssh's exit status. Refusals raise ``JitgateError``.

    SIGINT, SIGTERM or SIGHUP at any moment end the session with 128+N, the key directory removed.
    """
    return ended_by_signals(
        lambda: _session(target, command, login, options, accept_unknown_host, url, token)
    )


def _session(
    target: str,
    command: Sequence[str],
    login: str | None,
    options: Sequence[str],
    accept_unknown_host: bool,
    url: str | None,
    token: str | None,
) -> int:
    base_url, bearer = resolve(url, token)
    with private_directory() as directory:
        key = SessionKey(directory, "id_ed25519")
        try:
            import jitgate.cli.brokerhttp  # noqa: F401 - loaded while ssh-keygen works, for post_json

            body = {"target": target, "public_key": key.public_line()}
        finally:
            key.stop()
        if login is not None:
            try:
                body["login"] = sshnames.check_login(login)
            except ValueError as exc:
                raise errors.InvalidInput(str(exc)) from None
            # the broker refuses a login outside the role before minting anything
        minted = Minted.from_api(post_json(base_url, bearer, "/api/v1/ssh/certificates", body), target)
        user = minted.login(login)
        if accept_unknown_host:
            sys.stderr.write("warning: not checking the host's identity (--unsafe-accept-unknown-host)\n")
        key_file = key.file
        cert_file, hosts = write_certificate(directory, key_file.name, minted)
        argv = ssh_argv(
            key_file=key_file,
            cert_file=cert_file,
            known_hosts=hosts,
            login=user,
            minted=minted,
            options=options,
            command=command,
            accept_unknown_host=accept_unknown_host,
        )
        return run_child(argv)
