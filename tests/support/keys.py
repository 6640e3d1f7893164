"""Public key lines for tests: good ones of every type the broker certifies, and malformed ones.

``MALFORMED`` names one broken key per way a key can be broken (negative and huge RSA numbers, zero
modulus, points off the curve, truncated or oversized fields, wrong type names); ``mutated_lines``
is a hypothesis strategy that breaks good keys at random. Both feed the parser's property tests and
the fuzzing of the certificate endpoint.
"""

from __future__ import annotations

import base64
import struct

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import strategies as st

Private = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def public_line(private: Private) -> str:
    return private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


def fresh_ed25519() -> str:
    return public_line(ed25519.Ed25519PrivateKey.generate())


GOOD: dict[str, str] = {
    "ssh-ed25519": fresh_ed25519(),
    "ssh-rsa": public_line(rsa.generate_private_key(65537, 2048)),
    "ecdsa-sha2-nistp256": public_line(ec.generate_private_key(ec.SECP256R1())),
    "ecdsa-sha2-nistp384": public_line(ec.generate_private_key(ec.SECP384R1())),
    "ecdsa-sha2-nistp521": public_line(ec.generate_private_key(ec.SECP521R1())),
}


def field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def signed_mpint(value: int) -> bytes:
    """Any integer as an SSH mpint, negative ones included (two's complement, as RFC 4251 says)."""
    if value == 0:
        return field(b"")
    return field(value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True))


def line(key_type: str, blob: bytes) -> str:
    return f"{key_type} {base64.b64encode(blob).decode()}"


_N = (1 << 2047) + 0x1234567  # odd, 2048 bits: shaped like a modulus
_RSA = field(b"ssh-rsa")
_P256 = field(b"ecdsa-sha2-nistp256") + field(b"nistp256")

MALFORMED: dict[str, str] = {
    "rsa negative exponent": line("ssh-rsa", _RSA + signed_mpint(-65537) + signed_mpint(_N)),
    "rsa negative modulus": line("ssh-rsa", _RSA + signed_mpint(65537) + signed_mpint(-_N)),
    "rsa huge exponent": line("ssh-rsa", _RSA + signed_mpint((1 << 4000) + 1) + signed_mpint(_N)),
    "rsa exponent of one": line("ssh-rsa", _RSA + signed_mpint(1) + signed_mpint(_N)),
    "rsa even exponent": line("ssh-rsa", _RSA + signed_mpint(65536) + signed_mpint(_N)),
    "rsa zero modulus": line("ssh-rsa", _RSA + signed_mpint(65537) + signed_mpint(0)),
    "rsa even modulus": line("ssh-rsa", _RSA + signed_mpint(65537) + signed_mpint(_N + 1)),
    "rsa oversized modulus": line("ssh-rsa", _RSA + signed_mpint(65537) + signed_mpint((1 << 16400) + 1)),
    "rsa missing modulus": line("ssh-rsa", _RSA + signed_mpint(65537)),
    "ecdsa point off the curve": line("ecdsa-sha2-nistp256", _P256 + field(b"\x04" + b"\x01" * 64)),
    "ecdsa point at infinity": line("ecdsa-sha2-nistp256", _P256 + field(b"\x00")),
    "ecdsa empty point": line("ecdsa-sha2-nistp256", _P256 + field(b"")),
    "ecdsa short point": line("ecdsa-sha2-nistp256", _P256 + field(b"\x04\x01\x02")),
    "ecdsa wrong curve name": line(
        "ecdsa-sha2-nistp256", field(b"ecdsa-sha2-nistp256") + field(b"nistp521") + field(b"\x04" * 65)
    ),
    "ed25519 short point": line("ssh-ed25519", field(b"ssh-ed25519") + field(b"\x00" * 31)),
    "ed25519 long point": line("ssh-ed25519", field(b"ssh-ed25519") + field(b"\x00" * 33)),
    "truncated length": line("ssh-ed25519", field(b"ssh-ed25519") + b"\xff\xff\xff\xff"),
    "trailing bytes": line("ssh-ed25519", field(b"ssh-ed25519") + field(b"\x00" * 32) + b"\x00"),
    "empty blob": "ssh-ed25519 ",
    "type name of a secret": line("ssh-ed25519", field(b"-----BEGIN OPENSSH PRIVATE KEY-----")),
    "type name not ascii": line("ssh-ed25519", field("ssh-ed25519\u00e9".encode())),
    "unknown type": line("ssh-foo", field(b"ssh-foo") + field(b"\x00" * 32)),
    "dsa": line("ssh-dss", field(b"ssh-dss") + field(b"\x00" * 32)),
    "certificate": line("ssh-ed25519-cert-v01@openssh.com", field(b"ssh-ed25519-cert-v01@openssh.com")),
    "not base64": "ssh-ed25519 ***",
    "not a key": "hello",
    "oversized line": "ssh-ed25519 " + "A" * 20000,
}


def _blob(key_line: str) -> bytes:
    return base64.b64decode(key_line.split()[1])


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    """A good key of any type, broken at random: cut, bytes flipped or inserted, a field swapped."""
    key_type = draw(st.sampled_from(sorted(GOOD)))
    blob = bytearray(_blob(GOOD[key_type]))
    how = draw(st.sampled_from(["cut", "flip", "insert", "mpint", "length"]))
    at = draw(st.integers(0, len(blob)))
    if how == "cut":
        blob = blob[:at]
    elif how == "flip" and at < len(blob):
        blob[at] ^= draw(st.integers(1, 255))
    elif how == "insert":
        blob[at:at] = draw(st.binary(min_size=1, max_size=8))
    elif how == "mpint":
        blob = bytearray(field(key_type.encode()) + b"".join(
            signed_mpint(draw(st.integers(-(1 << 2100), 1 << 2100))) for _ in range(draw(st.integers(1, 3)))
        ))  # fmt: skip
    elif how == "length" and at + 4 <= len(blob):
        blob[at : at + 4] = struct.pack(">I", draw(st.integers(0, 2**32 - 1)))
    return line(draw(st.sampled_from([key_type, *sorted(GOOD)])), bytes(blob))
