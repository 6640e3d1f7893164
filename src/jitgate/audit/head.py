"""The signed audit head: the newest record's number and hash, signed by the audit key.

The chain writer, the checkpoint, the witnesses and the verifier all pass heads around; this is
the one shape they share, and the one way of checking a head's signature.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from jitgate.audit.canonical import head_message


@dataclass(frozen=True, slots=True)
class SignedHead:
    """The newest record's number and hash, signed by the audit key (``seq`` 0: empty chain)."""

    seq: int
    hash: str
    signature: str

    def signed_by(self, public_key: Ed25519PublicKey) -> bool:
        """Whether the signature is the audit key's over exactly this ``seq`` and ``hash``."""
        try:
            public_key.verify(bytes.fromhex(self.signature), head_message(self.seq, self.hash))
        except (InvalidSignature, ValueError):
            return False
        return True
