"""The CA key store: file modes, encryption at rest, refusals, rotation with overlap, no secret in repr."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from jitgate.errors import InvalidInput, NotFound
from jitgate.providers.ssh.ca import CaKeyUnavailable, CaKind, CaStore, KeyState
from jitgate.providers.ssh.wire import parse_public_key
from support import component_missing

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PASSPHRASE = "correct horse battery staple"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def key_file(store: CaStore, kind: CaKind) -> Path:
    return store.directory / f"{store.active(kind, T0).id}.key"


def test_keys_are_created_on_first_use_0600_even_with_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = CaStore(tmp_path / "ca")
        user = store.active(CaKind.USER, T0)
        host = store.active(CaKind.HOST, T0)
    finally:
        os.umask(old)
    assert user.id != host.id
    assert mode(tmp_path / "ca") == 0o700
    for kind in CaKind:
        assert mode(key_file(store, kind)) == 0o600
    assert not list((tmp_path / "ca").glob("*.tmp"))
    index = json.loads((tmp_path / "ca" / "index.json").read_text())
    assert [k["kind"] for k in index["keys"]] == ["user", "host"]
    assert "PRIVATE" not in (tmp_path / "ca" / "index.json").read_text()


def test_public_line_is_what_ssh_keygen_sees(tmp_path: Path) -> None:
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        component_missing("ssh-keygen")
    store = CaStore(tmp_path / "ca")
    (line,) = store.public_lines(CaKind.USER, T0)
    pub = tmp_path / "ca.pub"
    pub.write_text(line + "\n")
    out = subprocess.run([keygen, "-l", "-f", str(pub)], capture_output=True, text=True, check=True).stdout
    assert store.signer(CaKind.USER, T0).fingerprint in out
    assert parse_public_key(line).key_type == "ssh-ed25519"


def test_unencrypted_without_passphrase_and_stable_across_instances(tmp_path: Path) -> None:
    first = CaStore(tmp_path / "ca")
    fingerprint = first.signer(CaKind.USER, T0).fingerprint
    assert b"BEGIN PRIVATE KEY" in key_file(first, CaKind.USER).read_bytes()
    second = CaStore(tmp_path / "ca")
    assert second.signer(CaKind.USER, T0 + timedelta(days=1)).fingerprint == fingerprint


def test_encrypted_with_passphrase(tmp_path: Path) -> None:
    store = CaStore(tmp_path / "ca", PASSPHRASE)
    fingerprint = store.signer(CaKind.USER, T0).fingerprint
    data = key_file(store, CaKind.USER).read_bytes()
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in data
    assert CaStore(tmp_path / "ca", PASSPHRASE.encode()).signer(CaKind.USER, T0).fingerprint == fingerprint


@pytest.mark.parametrize(
    ("passphrase", "reason"),
    [(None, "encrypted and no CA passphrase"), ("wrong", "passphrase is wrong")],
)
def test_refuses_encrypted_key_without_or_with_wrong_passphrase(
    tmp_path: Path, passphrase: str | None, reason: str
) -> None:
    CaStore(tmp_path / "ca", PASSPHRASE).active(CaKind.USER, T0)
    with pytest.raises(CaKeyUnavailable, match=reason) as info:
        CaStore(tmp_path / "ca", passphrase).signer(CaKind.USER, T0)
    assert "\n" not in str(info.value)
    assert PASSPHRASE not in str(info.value)


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        CaStore(tmp_path / "ca", "")


def test_unencrypted_key_is_encrypted_once_a_passphrase_is_set(tmp_path: Path) -> None:
    plain = CaStore(tmp_path / "ca")
    fingerprint = plain.signer(CaKind.USER, T0).fingerprint
    path = key_file(plain, CaKind.USER)
    assert CaStore(tmp_path / "ca", PASSPHRASE).signer(CaKind.USER, T0).fingerprint == fingerprint
    assert b"ENCRYPTED" in path.read_bytes()
    assert mode(path) == 0o600


def test_refuses_key_file_readable_by_others(tmp_path: Path) -> None:
    store = CaStore(tmp_path / "ca")
    path = key_file(store, CaKind.USER)
    path.chmod(0o644)
    with pytest.raises(CaKeyUnavailable, match="chmod 600"):
        CaStore(tmp_path / "ca").signer(CaKind.USER, T0)


def test_refuses_key_file_that_is_not_the_indexed_key(tmp_path: Path) -> None:
    store = CaStore(tmp_path / "ca")
    user, host = key_file(store, CaKind.USER), key_file(store, CaKind.HOST)
    user.write_bytes(host.read_bytes())
    with pytest.raises(CaKeyUnavailable, match="does not hold the key"):
        CaStore(tmp_path / "ca").signer(CaKind.USER, T0)
    user.write_bytes(b"garbage")
    with pytest.raises(CaKeyUnavailable, match="damaged"):
        CaStore(tmp_path / "ca").signer(CaKind.USER, T0)


def test_rotation_keeps_the_old_key_trusted_through_the_overlap(tmp_path: Path) -> None:
    store = CaStore(tmp_path / "ca", PASSPHRASE)
    old = store.active(CaKind.USER, T0)
    old_signer = store.signer(CaKind.USER, T0)
    host_before = store.public_lines(CaKind.HOST, T0)
    new = store.rotate(CaKind.USER, timedelta(hours=1), T0 + timedelta(minutes=1))
    assert new.state is KeyState.ACTIVE
    assert store.signer(CaKind.USER, T0 + timedelta(minutes=1)).fingerprint == new.fingerprint
    assert store.signer(CaKind.USER, T0).fingerprint != old_signer.fingerprint

    during = T0 + timedelta(minutes=30)
    assert store.public_lines(CaKind.USER, during) == [new.public_line, old.public_line]
    assert store.public_lines(CaKind.HOST, during) == host_before  # other kind untouched

    after = T0 + timedelta(minutes=61, seconds=1)
    assert store.public_lines(CaKind.USER, after) == [new.public_line]

    # another broker process sharing the directory sees the rotation
    other = CaStore(tmp_path / "ca", PASSPHRASE)
    assert other.signer(CaKind.USER, during).fingerprint == new.fingerprint
    assert [k.state for k in other.keys(CaKind.USER, during)] == [KeyState.ACTIVE, KeyState.PREVIOUS]


def test_a_second_rotation_retires_keys_past_their_overlap_and_deletes_them(tmp_path: Path) -> None:
    store = CaStore(tmp_path / "ca")
    first = store.active(CaKind.USER, T0)
    second = store.rotate(CaKind.USER, timedelta(minutes=10), T0)
    third = store.rotate(CaKind.USER, timedelta(minutes=10), T0 + timedelta(hours=1))
    states = {k.id: k.state for k in store.all_keys()}
    assert states[first.id] is KeyState.RETIRED
    assert states[second.id] is KeyState.PREVIOUS
    assert states[third.id] is KeyState.ACTIVE
    assert not (tmp_path / "ca" / f"{first.id}.key").exists()
    assert (tmp_path / "ca" / f"{second.id}.key").exists()
    assert store.public_lines(CaKind.USER, T0 + timedelta(hours=1)) == [third.public_line, second.public_line]


def test_zero_overlap_retires_at_once_and_negative_is_refused(tmp_path: Path) -> None:
    store = CaStore(tmp_path / "ca")
    store.active(CaKind.USER, T0)
    new = store.rotate(CaKind.USER, timedelta(0), T0)
    assert store.public_lines(CaKind.USER, T0) == [new.public_line]
    with pytest.raises(InvalidInput, match="negative"):
        store.rotate(CaKind.USER, timedelta(seconds=-1), T0)


def test_naive_now_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="timezone-aware"):
        CaStore(tmp_path / "ca").active(CaKind.USER, datetime(2026, 1, 1))  # noqa: DTZ001 - on purpose


def test_known_hosts_lines_trust_the_host_ca(tmp_path: Path) -> None:
    store = CaStore(tmp_path / "ca")
    (line,) = store.known_hosts_lines(["*.example.com", "[10.0.0.5]:2222"], T0)
    assert line == f"@cert-authority *.example.com,[10.0.0.5]:2222 {store.public_lines(CaKind.HOST, T0)[0]}"
    with pytest.raises(InvalidInput):
        store.known_hosts_lines(["a b"], T0)


def test_nothing_secret_in_repr(tmp_path: Path) -> None:
    store = CaStore(tmp_path / "ca", PASSPHRASE)
    signer = store.signer(CaKind.USER, T0)
    info = store.active(CaKind.USER, T0)
    private = signer._sign.__self__  # type: ignore[attr-defined]
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    body = "".join(pem.splitlines()[1:-1])
    for text in (repr(store), repr(signer), repr(info), str(store.all_keys())):
        assert PASSPHRASE not in text
        assert body not in text
        assert raw.hex() not in text
    assert "encrypted=True" in repr(store)


def test_public_lines_are_worked_out_once_and_callers_cannot_change_them(tmp_path: Path) -> None:
    store = CaStore(tmp_path / "ca")
    first = store.public_lines(CaKind.HOST, T0)
    first.append("ssh-ed25519 AAAA planted")

    assert store.public_lines(CaKind.HOST, T0 + timedelta(seconds=1)) == first[:1]
    new = store.rotate(CaKind.HOST, timedelta(minutes=5), T0 + timedelta(seconds=2))
    assert store.public_lines(CaKind.HOST, T0 + timedelta(seconds=3)) == [new.public_line, first[0]]
    assert store.public_lines(CaKind.HOST, T0 + timedelta(minutes=6)) == [new.public_line]


def test_a_read_only_store_never_creates_a_ca_nor_its_directory(tmp_path: Path) -> None:
    store = CaStore(tmp_path / "ca", create=False)
    for kind in CaKind:
        with pytest.raises(NotFound, match=f"no {kind.value} CA in"):
            store.public_lines(kind, T0)
        with pytest.raises(NotFound):
            store.signer(kind, T0)
    with pytest.raises(InvalidInput, match="read-only"):
        store.rotate(CaKind.USER, timedelta(hours=1), T0)
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_store_shows_the_keys_a_writer_made_without_touching_a_file(tmp_path: Path) -> None:
    writer = CaStore(tmp_path / "ca", PASSPHRASE)
    lines = writer.public_lines(CaKind.USER, T0)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ca").iterdir()}
    reader = CaStore(tmp_path / "ca", create=False)
    assert reader.public_lines(CaKind.USER, T0) == lines
    with pytest.raises(NotFound):
        reader.public_lines(CaKind.HOST, T0)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ca").iterdir()} == before
