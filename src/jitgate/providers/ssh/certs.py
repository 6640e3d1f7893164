"""Our own small OpenSSH certificate signer (PROTOCOL.certkeys), Ed25519 CA only.

Why not a library: minting happens on every connection, and the general-purpose builders spend
more time re-parsing and re-validating than signing. Here the CA's public blob and signature
header are computed once (``CaSigner``), a certificate is one ``bytes`` join plus one Ed25519
signature, and the specification refuses every insecure default: no empty principal list (which
OpenSSH reads as "any principal"), no open-ended validity, no unknown options.

The output is checked by property tests against two independent parsers: cryptography's
``load_ssh_public_identity`` and OpenSSH's ``ssh-keygen -L``.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from jitgate.errors import InvalidInput
from jitgate.providers.ssh.wire import (
    CERT_SUFFIX,
    ED25519,
    SUPPORTED,
    ParsedPublicKey,
    Reader,
    fingerprint,
    string,
    uint32,
)


class CertType(StrEnum):
    USER = "user"
    HOST = "host"


_WIRE_TYPE = {CertType.USER: uint32(1), CertType.HOST: uint32(2)}
_CERT_TYPE_NAME = {key_type: string(key_type + CERT_SUFFIX) for key_type in SUPPORTED}

CRITICAL_OPTIONS = frozenset({"force-command", "source-address"})
USER_EXTENSIONS = frozenset(
    {
        "no-touch-required",
        "permit-X11-forwarding",
        "permit-agent-forwarding",
        "permit-port-forwarding",
        "permit-pty",
        "permit-user-rc",
    }
)
MAX_PRINCIPALS = 256
"""OpenSSH's own limit (SSHKEY_CERT_MAX_PRINCIPALS); it refuses certificates with more."""
_PRINCIPAL = re.compile(r"[!-+\--~]{1,255}")  # printable ASCII without space or comma
_MAX_TEXT = 4096
_UINT64_MAX = 2**64 - 1


def _printable(value: str, what: str, limit: int = _MAX_TEXT) -> None:
    # Key ids and commands end up in sshd's log: no control characters, bounded length.
    if not value or len(value) > limit or not value.isprintable() or not value.isascii():
        raise InvalidInput(f"{what} must be 1..{limit} printable ASCII characters")


def _source_address(value: str) -> None:
    entries = value.split(",")
    for entry in entries:
        _, slash, bits = entry.partition("/")
        try:
            if slash and not bits.isdigit():
                raise ValueError(entry)  # OpenSSH reads prefix lengths only, not netmasks
            ipaddress.ip_network(entry, strict=True)
        except ValueError:
            raise InvalidInput("source-address must be a comma-separated list of addresses/CIDRs") from None


def _epoch(value: datetime, what: str) -> int:
    if value.utcoffset() is None:
        raise InvalidInput(f"{what} must be a timezone-aware datetime")
    seconds = int(value.timestamp())
    if seconds < 0:
        raise InvalidInput(f"{what} is before 1970")
    return seconds


@dataclass(frozen=True, slots=True)
class CertSpec:
    """Everything a certificate says besides its key. Validated on construction; secure by default.

    ``principals`` must be non-empty (an empty list means "any principal" to OpenSSH), both validity
    bounds are required, ``serial`` is 1..2**64-1 (serial 0 cannot be revoked by a KRL), critical
    options are limited to ``force-command`` and ``source-address`` and extensions to OpenSSH's
    flag extensions, for user certificates only.
    """

    cert_type: CertType
    key_id: str
    serial: int
    principals: tuple[str, ...]
    valid_after: datetime
    valid_before: datetime
    critical_options: Mapping[str, str] = field(default_factory=dict)
    extensions: tuple[str, ...] = ()
    _encoded: bytes = field(init=False, repr=False, compare=False)
    """Serial through extensions, encoded once here so that signing is one join."""

    def __post_init__(self) -> None:
        # Minting runs per connection: the common case (a CertType, a tuple, no options) stays cheap.
        cert_type = self.cert_type if type(self.cert_type) is CertType else CertType(self.cert_type)
        _printable(self.key_id, "key id", 1024)
        serial = self.serial
        if not isinstance(serial, int) or not 0 < serial <= _UINT64_MAX:
            raise InvalidInput("serial must be between 1 and 2**64-1")
        principals = _checked_principals(self.principals)
        after, before = _epoch(self.valid_after, "valid_after"), _epoch(self.valid_before, "valid_before")
        if after >= before:
            raise InvalidInput("valid_before must be at least one second after valid_after")
        options: Mapping[str, str] = _NO_OPTIONS
        extensions = self.extensions
        if self.critical_options or extensions:
            if cert_type is CertType.HOST:
                raise InvalidInput("host certificates carry no critical options or extensions")
            options = MappingProxyType(dict(sorted(self.critical_options.items())))
            extensions = tuple(sorted(extensions))
            _check_options(options, extensions)
        object.__setattr__(self, "cert_type", cert_type)
        object.__setattr__(self, "principals", principals)
        object.__setattr__(self, "critical_options", options)
        object.__setattr__(self, "extensions", extensions)
        encoded = b"".join(
            (
                _U64(serial),
                _WIRE_TYPE[cert_type],
                string(self.key_id),
                string(b"".join([string(p) for p in principals])),
                _U64(after),
                _U64(before),
                string(b"".join([string(k) + string(string(v)) for k, v in options.items()])),
                string(b"".join([string(name) + _EMPTY for name in extensions])),
            )
        )
        object.__setattr__(self, "_encoded", encoded)


_NO_OPTIONS: Mapping[str, str] = MappingProxyType({})
_U64 = struct.Struct(">Q").pack
_EMPTY = uint32(0)


def _checked_principals(value: tuple[str, ...]) -> tuple[str, ...]:
    principals = value if type(value) is tuple else tuple(value)
    if not principals:
        raise InvalidInput("a certificate needs at least one principal")
    if len(principals) > MAX_PRINCIPALS:
        raise InvalidInput(f"a certificate may name at most {MAX_PRINCIPALS} principals")
    for principal in principals:
        if not isinstance(principal, str) or not _PRINCIPAL.fullmatch(principal):
            raise InvalidInput("principals must be printable ASCII without spaces or commas")
    if len(principals) > 1 and len(set(principals)) != len(principals):
        raise InvalidInput("principals must not repeat")
    return principals


def _check_options(options: Mapping[str, str], extensions: tuple[str, ...]) -> None:
    for name, value in options.items():
        if name not in CRITICAL_OPTIONS:
            raise InvalidInput(f"unknown critical option {name!r}")
        if name == "source-address":
            _source_address(value)
        else:
            _printable(value, name)
    for name in extensions:
        if name not in USER_EXTENSIONS:
            raise InvalidInput(f"unknown certificate extension {name!r}")
    if len(set(extensions)) != len(extensions):
        raise InvalidInput("extensions must not repeat")


class CaSigner:
    """An Ed25519 CA key ready to sign: the public blob and signature-key field are computed once.

    Never shows key material in ``repr``; ``fingerprint`` names the CA in records and logs.
    """

    __slots__ = ("_sign", "_signature_key", "fingerprint", "public_blob")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("the CA key must be an Ed25519 private key")
        raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_blob: bytes = string(ED25519) + string(raw)
        self.fingerprint: str = fingerprint(self.public_blob)
        self._signature_key = string(self.public_blob)
        self._sign = private_key.sign

    def public_line(self, comment: str = "") -> str:
        encoded = base64.b64encode(self.public_blob).decode()
        return f"{ED25519} {encoded} {comment}".rstrip()

    def __repr__(self) -> str:
        return f"CaSigner({self.fingerprint})"


_SIG_HEADER = string(ED25519)


def sign_certificate(ca: CaSigner | Ed25519PrivateKey, public_key: ParsedPublicKey, spec: CertSpec) -> bytes:
    """Return the wire blob of an OpenSSH certificate for ``public_key`` signed by ``ca``.

    The key type follows the certified key (``ssh-ed25519-cert-v01@openssh.com`` and the RSA and
    ECDSA variants). Refuses to certify the CA's own key.
    """
    signer = ca if isinstance(ca, CaSigner) else CaSigner(ca)
    if public_key.blob == signer.public_blob:
        raise InvalidInput("refusing to certify the CA's own key")
    type_name = _CERT_TYPE_NAME.get(public_key.key_type)
    if type_name is None:
        raise InvalidInput(f"cannot certify a {public_key.key_type} key")
    body = b"".join(
        (
            type_name,
            string(secrets.token_bytes(32)),
            public_key.key_fields,
            spec._encoded,
            _EMPTY,  # reserved
            signer._signature_key,
        )
    )
    signature = signer._sign(body)
    return body + string(_SIG_HEADER + string(signature))


def format_cert_line(cert: bytes, comment: str = "") -> str:
    """The ``*-cert.pub`` line for a certificate blob: ``TYPE BASE64 [comment]``."""
    cert_type = Reader(cert, "certificate").text()
    encoded = base64.b64encode(cert).decode()
    return f"{cert_type} {encoded} {comment}".rstrip()
