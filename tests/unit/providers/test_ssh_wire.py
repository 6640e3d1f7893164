"""SSH wire encoding and public key parsing: what we accept, what we refuse, ssh-keygen fingerprints."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from jitgate.errors import InvalidInput
from jitgate.providers.ssh.certs import CertSpec, CertType, sign_certificate
from jitgate.providers.ssh.wire import (
    SUPPORTED,
    Reader,
    mpint,
    name_list,
    parse_public_key,
    string,
    uint32,
    uint64,
)
from support import component_missing
from support.keys import MALFORMED, line, mutated_lines


def ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("ssh-keygen is not installed (apt-get install -y openssh-client)")
        component_missing("ssh-keygen")
    return found


Private = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def openssh_line(private: Private, comment: str = "") -> str:
    line = private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return f"{line} {comment}".rstrip()


KEYS: dict[str, Private] = {
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
    "rsa2048": rsa.generate_private_key(65537, 2048),
    "p256": ec.generate_private_key(ec.SECP256R1()),
    "p384": ec.generate_private_key(ec.SECP384R1()),
    "p521": ec.generate_private_key(ec.SECP521R1()),
}


def test_rfc4251_mpint_examples() -> None:
    assert mpint(0) == bytes.fromhex("00000000")
    assert mpint(0x9A378F9B2E332A7) == bytes.fromhex("0000000809a378f9b2e332a7")
    assert mpint(0x80) == bytes.fromhex("000000020080")
    with pytest.raises(ValueError, match="negative"):
        mpint(-1)


def test_scalars_strings_and_name_lists() -> None:
    assert uint32(1) == b"\0\0\0\1"
    assert uint64(2**64 - 1) == b"\xff" * 8
    assert string("ssh-ed25519") == b"\0\0\0\x0bssh-ed25519"
    assert name_list(["a", "bc"]) == b"\0\0\0\4a,bc"
    reader = Reader(string(b"x") + uint64(7) + mpint(0x80))
    assert (reader.string(), reader.uint64(), reader.mpint()) == (b"x", 7, 0x80)
    reader.end()


def test_reader_refuses_truncation_and_trailing_bytes() -> None:
    with pytest.raises(InvalidInput, match="truncated"):
        Reader(b"\0\0\0\5abc").string()
    reader = Reader(string(b"a") + b"!")
    reader.string()
    with pytest.raises(InvalidInput, match="trailing"):
        reader.end()


@pytest.mark.parametrize("name", sorted(KEYS))
def test_parses_supported_keys_with_ssh_keygen_fingerprint(name: str, tmp_path: Path) -> None:
    line = openssh_line(KEYS[name], f"someone@{name}")
    parsed = parse_public_key(line)
    assert parsed.line == line
    assert parsed.comment == f"someone@{name}"
    assert parsed.blob == base64.b64decode(line.split()[1])
    assert parsed.key_fields == parsed.blob[4 + len(parsed.key_type) :]
    path = tmp_path / "key.pub"
    path.write_text(line + "\n")
    out = subprocess.run(
        [ssh_keygen(), "-l", "-E", "sha256", "-f", str(path)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[1] == parsed.fingerprint
    assert int(out[0]) == parsed.bits


def test_line_without_comment_and_with_surrounding_space() -> None:
    line = openssh_line(KEYS["ed25519"])
    assert parse_public_key(f"  {line}\n").comment == ""


def refusal(line: str) -> str:
    with pytest.raises(InvalidInput) as info:
        parse_public_key(line)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_refuses_dsa() -> None:
    private = dsa.generate_private_key(1024)  # noqa: S505 - the weak key is the point
    numbers = private.public_key().public_numbers()
    params = numbers.parameter_numbers
    blob = string("ssh-dss") + mpint(params.p) + mpint(params.q) + mpint(params.g) + mpint(numbers.y)
    assert "DSA keys (ssh-dss) are refused" in refusal(line_of(blob, "ssh-dss"))


def test_refuses_small_rsa() -> None:
    key = rsa.generate_private_key(65537, 1024)  # noqa: S505 - the weak key is the point
    assert "1024 bits; at least 2048" in refusal(openssh_line(key))


def test_refuses_a_certificate_given_as_public_key() -> None:
    blob = base64.b64encode(string("ssh-ed25519-cert-v01@openssh.com") + string(b"n" * 32)).decode()
    assert "certificate is not accepted" in refusal(f"ssh-ed25519-cert-v01@openssh.com {blob}")


def test_refuses_unknown_and_security_key_types() -> None:
    assert "not supported" in refusal("sk-ssh-ed25519@openssh.com AAAA")
    assert "not supported" in refusal("hello world")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "must look like"),
        ("ssh-ed25519", "must look like"),
        ("ssh-ed25519 !!!notbase64", "base64"),
        ("ssh-ed25519 " + "A" * 20000, "longer than"),
    ],
)
def test_refuses_malformed_lines(line: str, reason: str) -> None:
    assert reason in refusal(line)


def line_of(blob: bytes, key_type: str = "ssh-ed25519") -> str:
    return f"{key_type} {base64.b64encode(blob).decode()}"


def test_refuses_bad_key_data() -> None:
    assert "not 32 bytes" in refusal(line_of(string("ssh-ed25519") + string(b"x" * 31)))
    assert "truncated" in refusal(line_of(string("ssh-ed25519") + b"\0\0\0\x20abc"))
    assert "trailing" in refusal(line_of(string("ssh-ed25519") + string(b"x" * 32) + b"\0"))
    other = base64.b64decode(openssh_line(KEYS["ed25519"]).split()[1])
    assert "different type" in refusal(line_of(other, "ssh-rsa"))
    p256 = openssh_line(KEYS["p256"])
    assert "different type" in refusal(f"ecdsa-sha2-nistp384 {p256.split()[1]}")


def test_refuses_non_canonical_rsa_and_points_off_the_curve() -> None:
    private = KEYS["rsa2048"]
    assert isinstance(private, rsa.RSAPrivateKey)
    numbers = private.public_key().public_numbers()
    padded_n = b"\0\0" + numbers.n.to_bytes(257, "big")
    blob = string("ssh-rsa") + mpint(numbers.e) + string(padded_n)
    assert "canonically" in refusal(line_of(blob, "ssh-rsa"))
    bad_point = string("ecdsa-sha2-nistp256") + string("nistp256") + string(b"\4" + b"\1" * 64)
    assert "not a point" in refusal(line_of(bad_point, "ecdsa-sha2-nistp256"))
    wrong_curve = string("ecdsa-sha2-nistp256") + string("nistp384") + string(b"\4" + b"\1" * 64)
    assert "wrong curve" in refusal(line_of(wrong_curve, "ecdsa-sha2-nistp256"))


def test_refuses_compressed_ecdsa_points() -> None:
    point = KEYS["p256"].public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    blob = string("ecdsa-sha2-nistp256") + string("nistp256") + string(point)
    assert "uncompressed" in refusal(line_of(blob, "ecdsa-sha2-nistp256"))


def test_repr_shows_fingerprint_not_key() -> None:
    parsed = parse_public_key(openssh_line(KEYS["ed25519"]))
    assert parsed.fingerprint in repr(parsed)
    assert base64.b64encode(parsed.blob).decode() not in repr(parsed)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_every_malformed_key_is_refused_as_invalid_input_in_one_line(name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_public_key(MALFORMED[name])
    assert "\n" not in str(refused.value)


@given(mutated_lines())
@settings(max_examples=400, deadline=None)
def test_a_key_broken_anywhere_is_refused_as_invalid_input_or_certifies_cleanly(key_line: str) -> None:
    try:
        parsed = parse_public_key(key_line)
    except InvalidInput:
        return
    # Whatever is accepted can be certified: nothing malformed reaches the signer.
    spec = CertSpec(
        cert_type=CertType.USER,
        key_id="k",
        serial=1,
        principals=("deploy",),
        valid_after=datetime(2026, 1, 1, tzinfo=UTC),
        valid_before=datetime(2026, 1, 2, tzinfo=UTC),
    )
    assert sign_certificate(ed25519.Ed25519PrivateKey.generate(), parsed, spec)


@given(st.binary(max_size=600), st.sampled_from(SUPPORTED))
@settings(max_examples=300, deadline=None)
def test_random_bytes_under_any_key_type_are_refused_as_invalid_input(blob: bytes, key_type: str) -> None:
    with pytest.raises(InvalidInput):
        parse_public_key(line(key_type, string(key_type) + blob))
