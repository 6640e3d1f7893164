"""OpenSSH key revocation lists (PROTOCOL.krl) naming revoked certificate serials per CA.

An SSH certificate dies on its own at ``valid_before``; a grant revoked earlier needs its
still-valid certificates refused at once. sshd reads this file through ``RevokedKeys``. We write
only what that needs: one KRL_SECTION_CERTIFICATES per CA key with a KRL_SECTION_CERT_SERIAL_LIST
of serials. The KRL is unsigned: sshd trusts it because it reads it from its own disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from jitgate.errors import InvalidInput
from jitgate.providers.ssh.wire import parse_public_key_blob, string, uint32, uint64

KRL_MAGIC = 0x5353484B524C0A00  # "SSHKRL\n\0"
KRL_FORMAT_VERSION = 1
KRL_SECTION_CERTIFICATES = b"\x01"
KRL_SECTION_CERT_SERIAL_LIST = b"\x20"
_UINT64_MAX = 2**64 - 1


def build_krl(
    ca_public_blobs_to_serials: Mapping[bytes, Iterable[int]],
    version: int,
    generated_at: datetime,
    comment: str = "",
) -> bytes:
    """Encode a KRL revoking ``serials`` of the certificates signed by each CA public key blob.

    ``version`` should grow with every change (sshd does not check it, but operators compare it).
    Serials are de-duplicated and sorted, CAs ordered by blob, so equal input gives equal bytes.
    A CA with no serials gets no section; an empty mapping gives a valid KRL revoking nothing.
    """
    if not 0 <= version <= _UINT64_MAX:
        raise InvalidInput("KRL version must fit in 64 bits")
    if generated_at.tzinfo is None:
        raise InvalidInput("generated_at must be a timezone-aware datetime")
    sections = []
    for ca_blob in sorted(ca_public_blobs_to_serials):
        if not ca_blob:
            # An empty CA key is a wildcard in PROTOCOL.krl (every CA); we never mean that.
            raise InvalidInput("a KRL section needs the CA's public key")
        parse_public_key_blob(ca_blob)
        serials = sorted(set(ca_public_blobs_to_serials[ca_blob]))
        if not serials:
            continue
        if serials[0] < 1 or serials[-1] > _UINT64_MAX:
            raise InvalidInput("certificate serials in a KRL must be between 1 and 2**64-1")
        serial_list = b"".join(uint64(serial) for serial in serials)
        body = string(ca_blob) + string(b"") + KRL_SECTION_CERT_SERIAL_LIST + string(serial_list)
        sections.append(KRL_SECTION_CERTIFICATES + string(body))
    header = b"".join(
        (
            uint64(KRL_MAGIC),
            uint32(KRL_FORMAT_VERSION),
            uint64(version),
            uint64(max(int(generated_at.timestamp()), 0)),
            uint64(0),  # flags: none defined
            string(b""),  # reserved
            string(comment),
        )
    )
    return header + b"".join(sections)
