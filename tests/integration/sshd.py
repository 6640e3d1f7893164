"""A throwaway real OpenSSH sshd on a loopback port, and the real ssh client to talk to it.

Configured as ``docs/operations.md`` says a target is: ``TrustedUserCAKeys`` for the broker's user
CA, ``AuthorizedPrincipalsFile DIR/principals/%u`` listing for each login only the principal bound
to this sshd's target (``deploy@web-1``), ``AuthorizedKeysFile none``. Loaded as fixtures by
``tests/integration/ssh/conftest.py`` (import the names from here to reuse them elsewhere).
Needs root: it creates the login users ``deploy`` and ``ops`` when missing.
Without sshd the tests skip, except in CI (``CI=true``) where they fail: a CI run that quietly
proved nothing is worse than a red one.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import component_missing

SSHD = Path("/usr/sbin/sshd")
CLIENT_OPTIONS = (
    "-F", "/dev/null",
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "IdentityAgent=none",
    "-o", "PreferredAuthentications=publickey",
    "-o", "ConnectTimeout=10",
    "-o", "LogLevel=ERROR",
)  # fmt: skip
"""The ssh client with only the key it is given: no user config, agent, prompts or chatter."""
LOGINS = ("deploy", "ops")


def unavailable(reason: str) -> None:
    """Skip outside CI, fail inside it."""
    component_missing(reason)


def require_openssh() -> None:
    if not SSHD.exists():
        unavailable("OpenSSH sshd is not installed (apt-get install -y openssh-server)")
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        unavailable("the OpenSSH client is not installed (apt-get install -y openssh-client)")
    if os.geteuid() != 0:
        unavailable("the real-sshd tests run as root (they create login users)")


def ensure_login_users(names: Sequence[str] = LOGINS) -> None:
    for name in names:
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True, capture_output=True)
        # '!' (locked) is refused by sshd even with UsePAM no; '*' only rules out passwords.
        subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sshd:
    """One running sshd. ``trust``, ``revoke`` and ``serve`` rewrite files sshd reads at every login."""

    directory: Path
    port: int
    host_key: Path
    trusted_ca_file: Path
    revoked_keys_file: Path | None
    log_file: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    principals_dir: Path = field(default=Path("/nonexistent"))

    def serve(self, target: str, logins: Sequence[str] = LOGINS) -> None:
        """Be the target ``target``: each login's principals file names ``LOGIN@TARGET`` only."""
        write_principals(self.principals_dir, {login: [f"{login}@{target}"] for login in logins})

    def trust(self, public_lines: Sequence[str]) -> None:
        self.trusted_ca_file.write_text("".join(f"{line}\n" for line in public_lines))

    def revoke(self, krl: bytes) -> None:
        if self.revoked_keys_file is None:
            raise RuntimeError("this sshd was started without RevokedKeys")
        self.revoked_keys_file.write_bytes(krl)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def host_public_line(self) -> str:
        return self.host_key.with_suffix(".pub").read_text().strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.principals_dir, ignore_errors=True)


def principals_directory() -> Path:
    """A directory for principals files that the logins can read.

    sshd reads ``AuthorizedPrincipalsFile`` as the user logging in, and pytest's temporary
    directories are private to root; in production it is ``/etc/ssh/jitgate/principals`` (0755).
    """
    directory = Path(tempfile.mkdtemp(prefix="jitgate-principals-"))
    directory.chmod(0o755)
    return directory


def write_principals(directory: Path, principals: Mapping[str, Sequence[str]]) -> None:
    """One file per login (0644), as ``AuthorizedPrincipalsFile DIR/%u`` reads them; others removed."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.iterdir():
        if stale.name not in principals:
            stale.unlink()
    for login, lines in principals.items():
        path = directory / login
        path.write_text("".join(f"{line}\n" for line in lines))
        path.chmod(0o644)


def start_sshd(
    directory: Path,
    *,
    target: str = "web-1",
    auth_lines: Sequence[str] | None = None,
    trusted_ca_lines: Sequence[str] = (),
    revoked_keys: bytes | None = None,
    host_certificate: str | None = None,
    host_key: Path | None = None,
    extra_lines: Sequence[str] = (),
) -> Sshd:
    """Start ``sshd -D -e`` with its own config in ``directory``; returns once it listens.

    It serves ``target`` (see ``Sshd.serve``). ``auth_lines`` replace the CA and principals lines
    (``TrustedUserCAKeys``, ``AuthorizedPrincipalsFile``, ``AuthorizedKeysFile``), for a test that
    configures sshd exactly as ``jitgate target sshd-config`` says.
    """
    require_openssh()
    directory.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    if host_key is None:
        host_key = directory / "host_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test-host", "-f", str(host_key)],
            check=True,
        )
    trusted = directory / "trusted_user_ca.pub"
    trusted.write_text("".join(f"{line}\n" for line in trusted_ca_lines))
    principals = principals_directory()
    write_principals(principals, {login: [f"{login}@{target}"] for login in LOGINS})
    if auth_lines is None:
        auth_lines = [
            f"TrustedUserCAKeys {trusted}",
            f"AuthorizedPrincipalsFile {principals}/%u",
            "AuthorizedKeysFile none",
        ]
    lines = [
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"PidFile {directory / 'sshd.pid'}",
        *auth_lines,
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "LogLevel VERBOSE",
        *extra_lines,
    ]
    revoked_file = None
    if revoked_keys is not None:
        revoked_file = directory / "revoked.krl"
        revoked_file.write_bytes(revoked_keys)
        lines.append(f"RevokedKeys {revoked_file}")
    if host_certificate is not None:
        cert_file = directory / "host_ed25519-cert.pub"
        cert_file.write_text(host_certificate + "\n")
        lines.append(f"HostCertificate {cert_file}")
    log_file = directory / "sshd.log"
    for _attempt in range(5):
        port = _free_port()
        config = directory / "sshd_config"
        config.write_text("\n".join([f"Port {port}", *lines]) + "\n")
        check = subprocess.run(
            [str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"sshd refuses its test config: {check.stderr.strip()}")
        with log_file.open("wb") as log:
            process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            if f"listening on 127.0.0.1 port {port}" in log_file.read_text(errors="replace"):
                return Sshd(directory, port, host_key, trusted, revoked_file, log_file, process, principals)
            time.sleep(0.02)  # polling for sshd to come up, not waiting for time to pass
        process.kill()
        process.wait(timeout=5)
    shutil.rmtree(principals, ignore_errors=True)
    raise RuntimeError(f"sshd did not start: {log_file.read_text(errors='replace')[-500:]}")


@dataclass(frozen=True)
class SshResult:
    returncode: int
    stdout: str
    stderr: str


def run_ssh(
    server: Sshd,
    login: str,
    key: Path,
    certificate: Path | None,
    command: Sequence[str] = ("id", "-un"),
    *,
    known_hosts: Path | None = None,
    timeout: float = 20,
) -> SshResult:
    """Run the real ``ssh`` client non-interactively with only the given key (+ cert).

    With ``known_hosts`` the host key is checked strictly against it; otherwise it is not checked.
    """
    options = [
        *CLIENT_OPTIONS,
        "-o", "CheckHostIP=no",
        "-i", str(key),
    ]  # fmt: skip
    if certificate is not None:
        options += ["-o", f"CertificateFile={certificate}"]
    if known_hosts is None:
        options += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    else:
        options += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"]
    result = subprocess.run(
        ["ssh", *options, "-p", str(server.port), f"{login}@127.0.0.1", "--", *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return SshResult(result.returncode, result.stdout, result.stderr)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sshd_logins() -> tuple[str, ...]:
    require_openssh()
    ensure_login_users(LOGINS)
    return LOGINS


def empty_krl(directory: Path) -> bytes:
    """An empty KRL as OpenSSH itself writes it (``ssh-keygen -k`` with no entries)."""
    path = directory / "empty.krl"
    subprocess.run(["ssh-keygen", "-q", "-k", "-f", str(path)], check=True, capture_output=True)
    return path.read_bytes()


class SshdFactory:
    """Starts sshds in fresh temporary directories and stops every one of them at teardown."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self.started: list[Sshd] = []

    def __call__(
        self,
        *,
        target: str = "web-1",
        auth_lines: Sequence[str] | None = None,
        trusted_ca_lines: Sequence[str] = (),
        revoked_keys: bytes | None = None,
        host_certificate: str | None = None,
        host_key: Path | None = None,
        extra_lines: Sequence[str] = (),
    ) -> Sshd:
        server = start_sshd(
            self._tmp.mktemp("sshd"),
            target=target,
            auth_lines=auth_lines,
            trusted_ca_lines=trusted_ca_lines,
            revoked_keys=revoked_keys,
            host_certificate=host_certificate,
            host_key=host_key,
            extra_lines=extra_lines,
        )
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture(scope="module")
def sshd(sshd_logins: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A shared sshd with ``RevokedKeys``; each test sets the trusted CAs and KRL it needs."""
    factory = SshdFactory(tmp_path_factory)
    server = factory(revoked_keys=empty_krl(tmp_path_factory.mktemp("krl")))
    yield server
    factory.stop_all()


@pytest.fixture
def sshd_factory(
    sshd_logins: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SshdFactory]:
    """For tests that need their own sshd config (a host certificate, say)."""
    factory = SshdFactory(tmp_path_factory)
    yield factory
    factory.stop_all()
