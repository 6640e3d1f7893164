"""OAuth rules that the console's sign-in and the CLI's share: PKCE (RFC 7636) and which provider
addresses may be trusted with codes, secrets and keys. Pure; no I/O, standard library only (the
CLI imports it on its way to a command)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import urlsplit

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_code_verifier() -> str:
    """A PKCE code verifier: 32 random bytes, 43 URL-safe characters (RFC 7636 section 4.1)."""
    return _b64(secrets.token_bytes(32))


def code_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (RFC 7636 section 4.2)."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


def secure_transport(url: str) -> bool:
    """``url`` is https, or plain http to a loopback address (a provider on the same machine)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in LOOPBACK
