"""Minted certificates against the real OpenSSH: sshd decides, not our own parser.

Every test mints through ``SshCertificateProvider`` with a fresh CA and asks a real ``sshd``
(``TrustedUserCAKeys``, ``RevokedKeys``, ``HostCertificate``) and the real ``ssh`` client.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sshd import Sshd, SshdFactory, empty_krl, run_ssh

from jitgate.clock import SystemClock
from jitgate.domain.identity import Identity
from jitgate.domain.model import Grant, RequestState
from jitgate.policy.model import Role, SshAccess, Target, TargetSelector
from jitgate.providers.base import Issued, IssueRequest
from jitgate.providers.ssh.ca import CaKind, CaStore
from jitgate.providers.ssh.provider import SshCertificateProvider

pytestmark = pytest.mark.sshd

CLOCK = SystemClock()
TARGET = Target(name="web-1", kind="ssh", address="127.0.0.1")


def make_role(**ssh: Any) -> Role:
    return Role(
        name="prod-shell",
        targets=TargetSelector(names=("web-1",)),
        ssh=SshAccess(**{"logins": ("deploy",), **ssh}),
        max_duration=timedelta(hours=4),
        requesters=("group:engineers",),
        approvers=("group:sre-leads",),
    )


@dataclass(frozen=True)
class Minted:
    key: Path
    cert: Path
    issued: Issued


@pytest.fixture
def provider(tmp_path: Path) -> SshCertificateProvider:
    return SshCertificateProvider(CaStore(tmp_path / "ca", "test passphrase"), CLOCK)


@pytest.fixture
def server(sshd: Sshd, provider: SshCertificateProvider, tmp_path: Path) -> Sshd:
    """The shared sshd, trusting this test's user CA and revoking nothing."""
    sshd.trust(provider.ca_store.public_lines(CaKind.USER, CLOCK.now()))
    sshd.revoke(empty_krl(tmp_path))
    return sshd


def mint(
    provider: SshCertificateProvider,
    directory: Path,
    role: Role | None = None,
    params: Mapping[str, Any] | None = None,
) -> Minted:
    """A client key made in memory, a certificate for it, both written the way ``ssh -i`` wants."""
    role = role or make_role()
    now = CLOCK.now()
    grant = Grant(
        id=f"g{secrets.token_hex(4)}",
        request_id=f"r{secrets.token_hex(4)}",
        holder="alice",
        role=role.name,
        targets=(TARGET.name,),
        starts_at=now - timedelta(minutes=1),
        expires_at=now + timedelta(hours=1),
        state=RequestState.ACTIVE,
    )
    private = ed25519.Ed25519PrivateKey.generate()
    public_line = private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    request = IssueRequest(
        grant=grant,
        role=role,
        target=TARGET,
        identity=Identity(name="alice", groups=frozenset({"engineers"})),
        now=now,
        params={"public_key": public_line, **(params or {})},
    )
    issued = provider.issue(request, provider.new_handle(request))
    name = f"id-{issued.handle}"
    key = directory / name
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    cert = directory / f"{name}-cert.pub"
    cert.write_text(issued.secret["certificate"] + "\n")
    return Minted(key, cert, issued)


def login(server: Sshd, minted: Minted, user: str = "deploy", *command: str) -> tuple[int, str, str]:
    result = run_ssh(server, user, minted.key, minted.cert, command or ("id", "-un"))
    return result.returncode, result.stdout.strip(), result.stderr


def test_login_works_with_a_minted_certificate(
    server: Sshd, provider: SshCertificateProvider, tmp_path: Path
) -> None:
    minted = mint(provider, tmp_path)
    assert login(server, minted)[:2] == (0, "deploy")
    # sshd logs the key id and serial: the forensic trail back to user, grant and request
    record = minted.issued.record
    assert f"ID {record['key_id']} (serial {record['serial']})" in server.log()
    assert "jitgate:user=alice:grant=g" in record["key_id"]


def test_login_outside_the_principals_is_refused(
    server: Sshd, provider: SshCertificateProvider, tmp_path: Path
) -> None:
    minted = mint(provider, tmp_path)
    code, _, stderr = login(server, minted, "ops")
    assert code == 255
    assert "Permission denied" in stderr


def test_a_certificate_for_one_target_is_refused_by_the_sshd_of_another(
    server: Sshd, provider: SshCertificateProvider, tmp_path: Path
) -> None:
    minted = mint(provider, tmp_path)  # for web-1
    server.serve("web-2")  # the same login, another host
    try:
        code, _, stderr = login(server, minted)
    finally:
        server.serve("web-1")
    assert code == 255
    assert "Permission denied (publickey)" in stderr
    assert login(server, minted)[:2] == (0, "deploy")


def test_certificate_from_an_untrusted_ca_is_refused(server: Sshd, tmp_path: Path) -> None:
    stranger = SshCertificateProvider(CaStore(tmp_path / "other-ca"), CLOCK)
    code, _, stderr = login(server, mint(stranger, tmp_path))
    assert code == 255
    assert "Permission denied" in stderr


def test_certificate_stops_working_at_valid_before(
    server: Sshd, provider: SshCertificateProvider, tmp_path: Path
) -> None:
    minted = mint(provider, tmp_path, make_role(cert_ttl=timedelta(seconds=4)))
    valid_before = minted.issued.valid_before
    assert valid_before - CLOCK.now() <= timedelta(seconds=4)
    assert login(server, minted)[0] == 0
    deadline = valid_before + timedelta(seconds=5)
    while CLOCK.now() < deadline:
        code, _, stderr = login(server, minted)
        finished = CLOCK.now()
        if code != 0:
            assert "Permission denied" in stderr
            assert finished >= valid_before
            return
        time.sleep(0.3)  # the short end-to-end wait for valid_before to pass
    pytest.fail("the certificate still worked after its valid_before")


def test_source_address_is_enforced(server: Sshd, provider: SshCertificateProvider, tmp_path: Path) -> None:
    elsewhere = mint(provider, tmp_path, make_role(source_address=("10.9.8.7/32",)))
    code, _, stderr = login(server, elsewhere)
    assert code == 255
    assert "Permission denied" in stderr
    assert "not from a permitted source address" in server.log()

    caller = make_role(source_address=("caller",))
    assert login(server, mint(provider, tmp_path, caller, {"source_address": "127.0.0.1"}))[:2] == (
        0,
        "deploy",
    )
    assert login(server, mint(provider, tmp_path, caller, {"source_address": "10.1.1.1"}))[0] == 255


def test_force_command_is_enforced(server: Sshd, provider: SshCertificateProvider, tmp_path: Path) -> None:
    minted = mint(provider, tmp_path, make_role(force_command="echo forced-$(id -un)"))
    assert login(server, minted, "deploy", "rm", "-rf", "/tmp/nothing")[:2] == (0, "forced-deploy")


def test_ssh_keygen_reads_every_field_as_intended(provider: SshCertificateProvider, tmp_path: Path) -> None:
    role = make_role(
        logins=("deploy", "ops"),
        force_command="/usr/bin/uptime",
        source_address=("10.0.0.0/8", "caller"),
        extensions=("permit-pty", "permit-port-forwarding"),
    )
    minted = mint(provider, tmp_path, role, {"source_address": "192.0.2.7"})
    out = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(minted.cert)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TZ": "UTC"},
    ).stdout
    record = minted.issued.record
    signer = provider.ca_store.signer(CaKind.USER, CLOCK.now())
    fmt = "%Y-%m-%dT%H:%M:%S"
    expected = f"""\
        Type: ssh-ed25519-cert-v01@openssh.com user certificate
        Public key: ED25519-CERT {record["fingerprint"]}
        Signing CA: ED25519 {signer.fingerprint} (using ssh-ed25519)
        Key ID: "{record["key_id"]}"
        Serial: {record["serial"]}
        Valid: from {minted.issued.valid_after.strftime(fmt)} to {minted.issued.valid_before.strftime(fmt)}
        Principals: 
                deploy@web-1
                ops@web-1
        Critical Options: 
                force-command /usr/bin/uptime
                source-address 10.0.0.0/8,192.0.2.7
        Extensions: 
                permit-port-forwarding
                permit-pty
"""  # noqa: W291 - ssh-keygen prints the trailing spaces
    assert out.split("\n", 1)[1] == expected
    assert record["ca_fingerprint"] == signer.fingerprint
    assert record["principals"] == ["deploy@web-1", "ops@web-1"]


def test_rotation_keeps_old_and_new_certificates_valid_through_the_overlap(
    server: Sshd, provider: SshCertificateProvider, tmp_path: Path
) -> None:
    store = provider.ca_store
    old = mint(provider, tmp_path)
    store.rotate(CaKind.USER, timedelta(hours=1), CLOCK.now())
    new = mint(provider, tmp_path)
    assert old.issued.record["ca_fingerprint"] != new.issued.record["ca_fingerprint"]

    server.trust(store.public_lines(CaKind.USER, CLOCK.now()))  # what `jitgate ca show` prints now
    assert login(server, old)[0] == 0
    assert login(server, new)[0] == 0

    server.trust(store.public_lines(CaKind.USER, CLOCK.now() + timedelta(hours=2)))  # overlap over
    assert login(server, old)[0] == 255
    assert login(server, new)[0] == 0


def test_krl_refuses_a_revoked_serial_at_once(
    server: Sshd, provider: SshCertificateProvider, tmp_path: Path
) -> None:
    revoked, kept = mint(provider, tmp_path), mint(provider, tmp_path)
    assert login(server, revoked)[0] == 0
    record = revoked.issued.record
    server.revoke(provider.krl([(record["ca_fingerprint"], int(record["serial"]))], 1, CLOCK.now()))
    code, _, stderr = login(server, revoked)
    assert code == 255
    assert "Permission denied" in stderr
    assert "revoked by file" in server.log()
    assert login(server, kept)[:2] == (0, "deploy")


def test_host_certificate_gives_trust_without_prompts(
    server: Sshd, sshd_factory: SshdFactory, provider: SshCertificateProvider, tmp_path: Path
) -> None:
    host_key = tmp_path / "host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    issued = provider.host_certificate(
        host_key.with_suffix(".pub").read_text(), ["127.0.0.1", "web-1"], timedelta(hours=1)
    )
    certified = sshd_factory(
        trusted_ca_lines=provider.ca_store.public_lines(CaKind.USER, CLOCK.now()),
        host_certificate=issued.secret["certificate"],
        host_key=host_key,
    )
    minted = mint(provider, tmp_path)
    known_hosts = tmp_path / "known_hosts"

    def trust_for(target: Sshd, host_ca: SshCertificateProvider) -> None:
        lines = host_ca.ca_store.known_hosts_lines([f"[127.0.0.1]:{target.port}"], CLOCK.now())
        known_hosts.write_text("\n".join(lines) + "\n")

    trust_for(certified, provider)
    result = run_ssh(certified, "deploy", minted.key, minted.cert, known_hosts=known_hosts)
    assert (result.returncode, result.stdout.strip()) == (0, "deploy")
    assert "Host key verification failed" not in result.stderr
    assert known_hosts.read_text().count("\n") == 1  # nothing was learnt or added

    trust_for(server, provider)  # the shared sshd's host key is not certified
    result = run_ssh(server, "deploy", minted.key, minted.cert, known_hosts=known_hosts)
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr

    stranger = SshCertificateProvider(CaStore(tmp_path / "other-ca"), CLOCK)
    trust_for(certified, stranger)  # certified, but by a CA the client does not trust
    result = run_ssh(certified, "deploy", minted.key, minted.cert, known_hosts=known_hosts)
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr
