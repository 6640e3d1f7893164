"""The SSH wire encoding (RFC 4251) and strict parsing of OpenSSH public key lines.

Everything that reaches the certificate signer from outside passes through ``parse_public_key``:
it accepts only the key types we are willing to certify (Ed25519, ECDSA on the NIST curves, RSA of
at least 2048 bits), checks that the key is mathematically valid, and insists on the canonical
encoding so that the blob we embed in a certificate is exactly the key the caller holds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jitgate.errors import InvalidInput

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

MAX_LINE = 16 * 1024
"""A 16384-bit RSA key (OpenSSH's own ceiling) fits comfortably; anything longer is refused unread."""
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 16384

ED25519 = "ssh-ed25519"
RSA = "ssh-rsa"
ECDSA_CURVES: dict[str, tuple[str, ec.EllipticCurve]] = {
    "ecdsa-sha2-nistp256": ("nistp256", ec.SECP256R1()),
    "ecdsa-sha2-nistp384": ("nistp384", ec.SECP384R1()),
    "ecdsa-sha2-nistp521": ("nistp521", ec.SECP521R1()),
}
SUPPORTED = (ED25519, RSA, *ECDSA_CURVES)
CERT_SUFFIX = "-cert-v01@openssh.com"


def uint32(value: int) -> bytes:
    return _U32.pack(value)


def uint64(value: int) -> bytes:
    return _U64.pack(value)


def string(value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _U32.pack(len(data)) + data


def mpint(value: int) -> bytes:
    """Big-endian, minimal length; a leading zero byte when the top bit is set keeps it positive."""
    if value < 0:
        raise ValueError("negative mpints do not occur in SSH keys")
    if value == 0:
        return _U32.pack(0)
    data = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return _U32.pack(len(data)) + data


def name_list(names: list[str] | tuple[str, ...]) -> bytes:
    return string(",".join(names))


class Reader:
    """Reads SSH wire values from a buffer; any truncation or trailing garbage is ``InvalidInput``."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str = "SSH data") -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def _take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise InvalidInput(f"{self._what} is truncated")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def uint32(self) -> int:
        value: int = _U32.unpack(self._take(4))[0]
        return value

    def uint64(self) -> int:
        value: int = _U64.unpack(self._take(8))[0]
        return value

    def string(self) -> bytes:
        return self._take(self.uint32())

    def text(self) -> str:
        try:
            return self.string().decode("ascii")
        except UnicodeDecodeError:
            raise InvalidInput(f"{self._what} has a non-ASCII name") from None

    def mpint(self) -> int:
        return int.from_bytes(self.string(), "big", signed=True)

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def end(self) -> None:
        if not self.at_end():
            raise InvalidInput(f"{self._what} has trailing bytes")


def fingerprint(blob: bytes) -> str:
    """``SHA256:…`` exactly as ``ssh-keygen -l`` prints it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).rstrip(b"=").decode()
    return f"SHA256:{digest}"


@dataclass(frozen=True, slots=True)
class ParsedPublicKey:
    """A validated public key: its type, full wire blob and the key fields a certificate embeds."""

    key_type: str
    blob: bytes
    comment: str
    bits: int

    @property
    def key_fields(self) -> bytes:
        """The blob without its leading type string: what PROTOCOL.certkeys puts after the nonce."""
        return self.blob[4 + len(self.key_type) :]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)

    @property
    def line(self) -> str:
        encoded = base64.b64encode(self.blob).decode()
        return f"{self.key_type} {encoded} {self.comment}".rstrip()

    def __repr__(self) -> str:
        return f"ParsedPublicKey({self.key_type}, {self.bits} bits, {self.fingerprint})"


def _refuse_type(key_type: str) -> InvalidInput:
    if key_type.endswith(CERT_SUFFIX):
        return InvalidInput("a certificate is not accepted as a public key; send the plain public key")
    if key_type == "ssh-dss":
        return InvalidInput("DSA keys (ssh-dss) are refused; use ed25519, ecdsa or rsa of 2048 bits or more")
    if key_type.startswith("sk-"):
        return InvalidInput(
            "security keys (sk-…, FIDO) are not supported yet; use ed25519, ecdsa or rsa of 2048 bits or more"
        )
    shown = key_type if key_type.isprintable() and len(key_type) <= 64 else "unknown"
    return InvalidInput(f"key type {shown!r} is not supported; use one of {', '.join(SUPPORTED)}")


def _rsa(reader: Reader) -> tuple[bytes, int]:
    """The canonical blob and size of the RSA key in ``reader``, after its type name."""
    e = reader.mpint()
    n = reader.mpint()
    reader.end()
    # mpints are signed: a negative exponent or modulus must reach no library call.
    if e <= 0 or n <= 0:
        raise InvalidInput("rsa public key has a negative or zero exponent or modulus")
    bits = n.bit_length()
    if bits < RSA_MIN_BITS:
        raise InvalidInput(f"rsa key has {bits} bits; at least {RSA_MIN_BITS} are required")
    if bits > RSA_MAX_BITS:
        raise InvalidInput(f"rsa key has {bits} bits; at most {RSA_MAX_BITS} are accepted")
    if e % 2 == 0 or n % 2 == 0 or e >= n:
        raise InvalidInput("rsa public key is not valid")
    try:
        rsa.RSAPublicNumbers(e, n).public_key()
    except (ValueError, OverflowError, TypeError):
        raise InvalidInput("rsa public key is not valid") from None
    return string(RSA) + mpint(e) + mpint(n), bits


def parse_public_key_blob(blob: bytes, comment: str = "") -> ParsedPublicKey:
    """Validate a public key wire blob and re-encode it canonically; refuse anything else."""
    reader = Reader(blob, "public key")
    key_type = reader.text()
    if key_type == ED25519:
        point = reader.string()
        reader.end()
        if len(point) != 32:
            raise InvalidInput("ed25519 public key is not 32 bytes")
        canonical = string(ED25519) + string(point)
        bits = 256
    elif key_type == RSA:
        canonical, bits = _rsa(reader)
    elif key_type in ECDSA_CURVES:
        curve_name, curve = ECDSA_CURVES[key_type]
        if reader.text() != curve_name:
            raise InvalidInput(f"{key_type} key names the wrong curve")
        point = reader.string()
        reader.end()
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
        except (ValueError, OverflowError, TypeError):
            raise InvalidInput(f"{key_type} public key is not a point on its curve") from None
        if point[:1] != b"\x04":
            # OpenSSH only reads uncompressed points; a compressed one would make an unusable cert.
            raise InvalidInput(f"{key_type} public key must be an uncompressed point")
        canonical = string(key_type) + string(curve_name) + string(point)
        bits = curve.key_size
    else:
        raise _refuse_type(key_type)
    if canonical != blob:
        raise InvalidInput(f"{key_type} public key is not canonically encoded")
    return ParsedPublicKey(key_type=key_type, blob=blob, comment=comment, bits=bits)


def parse_public_key(line: str) -> ParsedPublicKey:
    """Parse one OpenSSH public key line (``ssh-ed25519 AAAA… comment``)."""
    if not isinstance(line, str):
        raise InvalidInput("public key must be a string")
    if len(line) > MAX_LINE:
        raise InvalidInput(f"public key line is longer than {MAX_LINE} characters")
    parts = line.strip().split(maxsplit=2)
    if len(parts) < 2:
        raise InvalidInput("public key must look like 'ssh-ed25519 AAAA… [comment]'")
    key_type, encoded = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) == 3 else ""
    if key_type not in SUPPORTED:
        raise _refuse_type(key_type)
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("public key is not valid base64") from None
    parsed = parse_public_key_blob(blob, comment if comment.isprintable() else "")
    if parsed.key_type != key_type:
        raise InvalidInput("public key line names a different type than its key data")
    return parsed
