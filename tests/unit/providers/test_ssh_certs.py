"""Our certificate encoder against two independent parsers: cryptography's and OpenSSH's ssh-keygen -L."""

from __future__ import annotations

import ipaddress
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    SSHCertificate,
    SSHCertificateType,
    load_ssh_public_identity,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitgate.errors import InvalidInput
from jitgate.providers.ssh.certs import (
    USER_EXTENSIONS,
    CaSigner,
    CertSpec,
    CertType,
    format_cert_line,
    sign_certificate,
)
from jitgate.providers.ssh.wire import ParsedPublicKey, parse_public_key
from support import component_missing

CA = CaSigner(ed25519.Ed25519PrivateKey.generate())
PRIVATE_KEYS: list[ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey] = [
    ed25519.Ed25519PrivateKey.generate(),
    rsa.generate_private_key(65537, 2048),
    rsa.generate_private_key(65537, 3072),
    ec.generate_private_key(ec.SECP256R1()),
    ec.generate_private_key(ec.SECP384R1()),
    ec.generate_private_key(ec.SECP521R1()),
]
PUBLIC_KEYS = [
    parse_public_key(k.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode())
    for k in PRIVATE_KEYS
]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("ssh-keygen is not installed (apt-get install -y openssh-client)")
        component_missing("ssh-keygen")
    return found


# -- strategies -------------------------------------------------------------------------------

_principal = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","), min_size=1, max_size=24
)
_printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=80)


@st.composite
def _networks(draw: st.DrawFn) -> str:
    address = draw(st.ip_addresses())
    if draw(st.booleans()):
        return str(address)
    prefix = draw(st.integers(0, address.max_prefixlen))
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@st.composite
def _moment(draw: st.DrawFn, low: int, high: int) -> datetime:
    seconds = draw(st.integers(low, high))
    offset = timezone(timedelta(minutes=draw(st.integers(-12 * 60, 14 * 60))))
    return datetime.fromtimestamp(seconds, UTC).astimezone(offset)


@st.composite
def specs(draw: st.DrawFn) -> CertSpec:
    cert_type = draw(st.sampled_from(CertType))
    valid_after = draw(_moment(1, 2**34))
    valid_before = valid_after + timedelta(seconds=draw(st.integers(1, 10**8)))
    options: dict[str, str] = {}
    extensions: list[str] = []
    if cert_type is CertType.USER:
        if draw(st.booleans()):
            options["force-command"] = draw(_printable)
        if draw(st.booleans()):
            options["source-address"] = ",".join(draw(st.lists(_networks(), min_size=1, max_size=4)))
        extensions = draw(st.lists(st.sampled_from(sorted(USER_EXTENSIONS)), unique=True))
    return CertSpec(
        cert_type=cert_type,
        key_id=draw(_printable),
        serial=draw(st.integers(1, 2**64 - 1)),
        principals=tuple(draw(st.lists(_principal, min_size=1, max_size=6, unique=True))),
        valid_after=valid_after,
        valid_before=valid_before,
        critical_options=options,
        extensions=tuple(draw(st.permutations(extensions))),
    )


# -- an independent raw reader, to check the bytes PROTOCOL.certkeys prescribes ------------------


@dataclass
class Raw:
    data: bytes
    pos: int = 0

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        assert len(out) == n
        self.pos += n
        return out

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def s(self) -> bytes:
        return self.take(self.u32())

    def strings(self) -> list[bytes]:
        out = []
        while self.pos < len(self.data):
            out.append(self.s())
        return out

    def pairs(self) -> list[tuple[bytes, bytes]]:
        out = []
        while self.pos < len(self.data):
            out.append((self.s(), self.s()))
        return out


def raw_fields(cert: bytes, key: ParsedPublicKey) -> dict[str, object]:
    raw = Raw(cert)
    fields: dict[str, object] = {"type": raw.s(), "nonce": raw.s()}
    fields["key"] = raw.take(len(key.key_fields))
    fields["serial"], fields["cert_type"] = raw.u64(), raw.u32()
    fields["key_id"] = raw.s()
    fields["principals"] = Raw(raw.s()).strings()
    fields["valid_after"], fields["valid_before"] = raw.u64(), raw.u64()
    fields["critical"] = Raw(raw.s()).pairs()
    fields["extensions"] = Raw(raw.s()).pairs()
    fields["reserved"] = raw.s()
    fields["ca"] = raw.s()
    signature = Raw(raw.s())
    fields["sig_type"], fields["sig"] = signature.s(), signature.s()
    assert raw.pos == len(cert)
    return fields


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(key_index=st.integers(0, len(PUBLIC_KEYS) - 1), spec=specs())
def test_cryptography_parses_back_every_field(key_index: int, spec: CertSpec) -> None:
    key = PUBLIC_KEYS[key_index]
    cert = sign_certificate(CA, key, spec)
    parsed = load_ssh_public_identity(format_cert_line(cert, "c").encode())
    assert isinstance(parsed, SSHCertificate)
    parsed.verify_cert_signature()
    assert parsed.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() == key.line
    ca_line = parsed.signature_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    assert ca_line == CA.public_line()
    assert parsed.serial == spec.serial
    expected_type = SSHCertificateType.USER if spec.cert_type is CertType.USER else SSHCertificateType.HOST
    assert parsed.type == expected_type
    assert parsed.key_id == spec.key_id.encode()
    assert parsed.valid_principals == [p.encode() for p in spec.principals]
    assert parsed.valid_after == int(spec.valid_after.timestamp())
    assert parsed.valid_before == int(spec.valid_before.timestamp())
    assert parsed.critical_options == {k.encode(): v.encode() for k, v in spec.critical_options.items()}
    assert parsed.extensions == {name.encode(): b"" for name in spec.extensions}
    assert len(parsed.nonce) == 32


@settings(max_examples=150, deadline=None)
@given(key_index=st.integers(0, len(PUBLIC_KEYS) - 1), spec=specs())
def test_bytes_are_exactly_as_protocol_certkeys_says(key_index: int, spec: CertSpec) -> None:
    key = PUBLIC_KEYS[key_index]
    fields = raw_fields(sign_certificate(CA, key, spec), key)
    assert fields["type"] == f"{key.key_type}-cert-v01@openssh.com".encode()
    assert fields["key"] == key.key_fields
    assert fields["principals"] == [p.encode() for p in spec.principals]
    assert fields["key_id"] == spec.key_id.encode()
    assert fields["serial"] == spec.serial
    assert fields["cert_type"] == (1 if spec.cert_type is CertType.USER else 2)
    critical = fields["critical"]
    assert isinstance(critical, list)
    assert [name for name, _ in critical] == sorted(name for name, _ in critical)
    for name, data in critical:
        value = spec.critical_options[name.decode()].encode()
        assert data == struct.pack(">I", len(value)) + value  # a string inside the string
    extensions = fields["extensions"]
    assert isinstance(extensions, list)
    assert [name for name, _ in extensions] == sorted(name.encode() for name in spec.extensions)
    assert all(data == b"" for _, data in extensions)
    assert fields["reserved"] == b""
    assert fields["ca"] == CA.public_blob
    assert fields["sig_type"] == b"ssh-ed25519"
    assert isinstance(fields["sig"], bytes)
    assert len(fields["sig"]) == 64


def keygen_listing(text: str) -> dict[str, list[str]]:
    """Parse ``ssh-keygen -L`` output into {field: [values]}; section items are indented lines."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines()[1:]:
        if line.startswith("                "):
            item = line.strip()
            if item != "(none)":
                out[current].append(line[16:])
            continue
        name, _, value = line.strip().partition(":")
        current = name
        out[name] = [value.strip()] if value.strip() not in {"", "(none)"} else []
    return out


def stamp(value: datetime) -> str:
    return datetime.fromtimestamp(int(value.timestamp()), UTC).strftime("%Y-%m-%dT%H:%M:%S")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(key_index=st.integers(0, len(PUBLIC_KEYS) - 1), spec=specs())
def test_ssh_keygen_reads_every_field(key_index: int, spec: CertSpec) -> None:
    key = PUBLIC_KEYS[key_index]
    cert = sign_certificate(CA, key, spec)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "id-cert.pub"
        path.write_text(format_cert_line(cert, "sample") + "\n")
        result = subprocess.run(
            [ssh_keygen(), "-L", "-f", str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "TZ": "UTC"},
            check=False,
        )
    assert result.returncode == 0, result.stderr
    listing = keygen_listing(result.stdout)
    assert listing["Type"] == [f"{key.key_type}-cert-v01@openssh.com {spec.cert_type.value} certificate"]
    assert listing["Public key"][0].endswith(key.fingerprint)
    assert CA.fingerprint in listing["Signing CA"][0]
    assert listing["Key ID"] == [f'"{spec.key_id}"']
    assert listing["Serial"] == [str(spec.serial)]
    assert listing["Valid"] == [f"from {stamp(spec.valid_after)} to {stamp(spec.valid_before)}"]
    assert listing["Principals"] == list(spec.principals)
    assert listing["Critical Options"] == [f"{k} {v}" for k, v in spec.critical_options.items()]
    assert listing["Extensions"] == list(spec.extensions)


# -- refusals ---------------------------------------------------------------------------------


def make_spec(**changes: object) -> CertSpec:
    base: dict[str, object] = {
        "cert_type": "user",
        "key_id": "jitgate:user=alice",
        "serial": 42,
        "principals": ("deploy",),
        "valid_after": NOW,
        "valid_before": NOW + timedelta(minutes=5),
        "critical_options": {},
        "extensions": ("permit-pty",),
    }
    base.update(changes)
    return CertSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"principals": ()}, "at least one principal"),
        ({"principals": ("a,b",)}, "without spaces or commas"),
        ({"principals": ("a b",)}, "without spaces or commas"),
        ({"principals": ("deploy", "deploy")}, "must not repeat"),
        ({"principals": tuple(f"p{i}" for i in range(257))}, "at most 256"),
        ({"serial": 0}, "serial"),
        ({"serial": 2**64}, "serial"),
        ({"key_id": ""}, "key id"),
        ({"key_id": "a\nb"}, "key id"),
        ({"valid_after": datetime(2026, 1, 1)}, "timezone-aware"),  # noqa: DTZ001 - naive on purpose
        ({"valid_before": NOW}, "at least one second"),
        ({"valid_before": NOW + timedelta(milliseconds=500)}, "at least one second"),
        ({"critical_options": {"permit-everything": ""}}, "unknown critical option"),
        ({"critical_options": {"force-command": ""}}, "force-command"),
        ({"critical_options": {"source-address": "10.0.0.0/255.0.0.0"}}, "source-address"),
        ({"critical_options": {"source-address": "10.0.0.1/8"}}, "source-address"),
        ({"critical_options": {"source-address": "10.0.0.0/8,"}}, "source-address"),
        ({"critical_options": {"source-address": "example.com"}}, "source-address"),
        ({"extensions": ("permit-everything",)}, "unknown certificate extension"),
        ({"extensions": ("permit-pty", "permit-pty")}, "must not repeat"),
        ({"cert_type": "host"}, "host certificates carry no"),
        ({"cert_type": "root"}, "root"),
    ],
)
def test_spec_refuses_insecure_or_malformed_input(changes: dict[str, object], reason: str) -> None:
    with pytest.raises((InvalidInput, ValueError), match=reason):
        make_spec(**changes)


def test_spec_is_immutable_and_normalised() -> None:
    spec = make_spec(
        critical_options={"source-address": "10.0.0.0/8", "force-command": "true"},
        extensions=("permit-pty", "permit-agent-forwarding"),
    )
    assert list(spec.critical_options) == ["force-command", "source-address"]
    assert spec.extensions == ("permit-agent-forwarding", "permit-pty")
    with pytest.raises(TypeError):
        spec.critical_options["force-command"] = "sh"  # type: ignore[index]


def test_refuses_to_certify_the_ca_key() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    signer = CaSigner(private)
    own = parse_public_key(signer.public_line())
    with pytest.raises(InvalidInput, match="CA's own key"):
        sign_certificate(signer, own, make_spec())
    with pytest.raises(InvalidInput, match="CA's own key"):
        sign_certificate(private, own, make_spec())


def test_raw_private_key_and_signer_make_equivalent_certs() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    cert = sign_certificate(private, PUBLIC_KEYS[0], make_spec())
    parsed = load_ssh_public_identity(format_cert_line(cert).encode())
    assert isinstance(parsed, SSHCertificate)
    parsed.verify_cert_signature()
    assert (
        CaSigner(private).public_line()
        in parsed.signature_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + " "
    )


def test_every_cert_gets_a_fresh_nonce() -> None:
    spec = make_spec()
    first, second = (sign_certificate(CA, PUBLIC_KEYS[0], spec) for _ in range(2))
    assert raw_fields(first, PUBLIC_KEYS[0])["nonce"] != raw_fields(second, PUBLIC_KEYS[0])["nonce"]


def test_signer_repr_hides_the_key() -> None:
    assert repr(CA) == f"CaSigner({CA.fingerprint})"
    with pytest.raises(TypeError):
        CaSigner(ec.generate_private_key(ec.SECP256R1()))  # type: ignore[arg-type]
