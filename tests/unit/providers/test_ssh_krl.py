"""Our KRL encoder, read back by OpenSSH's own ``ssh-keygen -Q`` (the code sshd uses for RevokedKeys)."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from jitgate.errors import InvalidInput
from jitgate.providers.ssh.certs import CaSigner, CertSpec, format_cert_line, sign_certificate
from jitgate.providers.ssh.krl import build_krl
from jitgate.providers.ssh.wire import parse_public_key
from support import component_missing

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CA_A = CaSigner(ed25519.Ed25519PrivateKey.generate())
CA_B = CaSigner(ed25519.Ed25519PrivateKey.generate())
USER_KEY = parse_public_key(
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    .decode()
)


def ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("ssh-keygen is not installed (apt-get install -y openssh-client)")
        component_missing("ssh-keygen")
    return found


def write_cert(directory: Path, ca: CaSigner, serial: int) -> Path:
    spec = CertSpec(
        cert_type="user",  # type: ignore[arg-type]
        key_id=f"k{serial}",
        serial=serial,
        principals=("deploy",),
        valid_after=NOW,
        valid_before=NOW + timedelta(days=3650),
    )
    path = directory / f"{ca.fingerprint[-6:].replace('/', '_')}-{serial}-cert.pub"
    path.write_text(format_cert_line(sign_certificate(ca, USER_KEY, spec)) + "\n")
    return path


def query(krl: bytes, certs: list[Path], directory: Path) -> dict[str, str]:
    """``ssh-keygen -Q``: one verdict (``REVOKED`` or ``ok``) per certificate file."""
    krl_path = directory / "revoked.krl"
    krl_path.write_bytes(krl)
    result = subprocess.run(
        [ssh_keygen(), "-Q", "-f", str(krl_path), *map(str, certs)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in {0, 1}, result.stderr
    verdicts = {}
    for line in result.stdout.splitlines():
        name, _, verdict = line.rpartition(": ")
        verdicts[name.split(" ")[0]] = verdict
    assert (result.returncode == 1) == ("REVOKED" in verdicts.values())
    return verdicts


def test_revoked_serials_are_revoked_and_others_ok(tmp_path: Path) -> None:
    certs = {
        ("a", 5): write_cert(tmp_path, CA_A, 5),
        ("a", 6): write_cert(tmp_path, CA_A, 6),
        ("a", 2**64 - 1): write_cert(tmp_path, CA_A, 2**64 - 1),
        ("b", 5): write_cert(tmp_path, CA_B, 5),
        ("b", 7): write_cert(tmp_path, CA_B, 7),
    }
    krl = build_krl({CA_A.public_blob: [5, 2**64 - 1, 5], CA_B.public_blob: iter([7])}, 3, NOW)
    verdicts = query(krl, list(certs.values()), tmp_path)
    expected = {
        ("a", 5): "REVOKED",
        ("a", 6): "ok",
        ("a", 2**64 - 1): "REVOKED",
        ("b", 5): "ok",
        ("b", 7): "REVOKED",
    }
    assert {key: verdicts[str(path)] for key, path in certs.items()} == expected


def test_ssh_keygen_lists_version_date_and_serials(tmp_path: Path) -> None:
    path = tmp_path / "revoked.krl"
    path.write_bytes(build_krl({CA_A.public_blob: [9, 3], CA_B.public_blob: []}, 42, NOW, comment="jitgate"))
    out = subprocess.run(
        [ssh_keygen(), "-Q", "-l", "-f", str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TZ": "UTC"},
    ).stdout
    assert "# KRL version 42" in out
    assert "# Generated at 20260301T120000" in out
    assert "jitgate" in out
    assert f"# CA key ssh-ed25519 {CA_A.fingerprint}" in out
    assert CA_B.fingerprint not in out  # no serials, no section
    assert [line for line in out.splitlines() if line.startswith("serial")] == ["serial: 3", "serial: 9"]


def test_empty_krl_revokes_nothing(tmp_path: Path) -> None:
    cert = write_cert(tmp_path, CA_A, 11)
    assert query(build_krl({}, 0, NOW), [cert], tmp_path) == {str(cert): "ok"}


def test_same_input_same_bytes() -> None:
    one = build_krl({CA_A.public_blob: [3, 1, 2], CA_B.public_blob: [4]}, 1, NOW)
    two = build_krl({CA_B.public_blob: [4], CA_A.public_blob: [2, 3, 1, 1]}, 1, NOW)
    assert one == two


@pytest.mark.parametrize(
    ("mapping", "version", "when", "reason"),
    [
        ({CA_A.public_blob: [0]}, 1, NOW, "between 1 and"),
        ({CA_A.public_blob: [2**64]}, 1, NOW, "between 1 and"),
        ({b"": [1]}, 1, NOW, "CA's public key"),
        ({b"\0\0\0\1x": [1]}, 1, NOW, "not supported"),
        ({}, -1, NOW, "64 bits"),
        ({}, 1, datetime(2026, 1, 1), "timezone-aware"),  # noqa: DTZ001 - naive on purpose
    ],
)
def test_refusals(mapping: dict[bytes, list[int]], version: int, when: datetime, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        build_krl(mapping, version, when)
