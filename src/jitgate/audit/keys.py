"""The audit signing key: an Ed25519 key kept in a file outside the database.

The key signs the head of the hash chain, which is what makes a truncated tail detectable: someone
who can edit the database but not read this file cannot produce a valid head for a shorter chain.
On one machine the key lives in ``DATA_DIR/keys/audit_ed25519.pem`` and is created on first use;
replicas sharing a PostgreSQL database must all load the same file from a configured path, which
is never created implicitly (a replica minting its own key would break every other's verify).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from jitgate.errors import InvalidInput

KEY_FILE_NAME = "audit_ed25519.pem"


def default_key_path(data_dir: Path) -> Path:
    return data_dir / "keys" / KEY_FILE_NAME


def load_for(data_dir: Path, key_file: Path | None = None) -> Ed25519PrivateKey:
    """The broker's audit key: ``key_file`` if configured (must exist), else the data dir's own."""
    if key_file is not None:
        return load_signing_key(key_file)
    return load_or_create_signing_key(default_key_path(data_dir))


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load an existing key; refuse a missing file, a file others can read, or a non-Ed25519 key."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"audit key file {path} does not exist") from None
    except OSError as exc:
        raise InvalidInput(f"audit key file {path} cannot be read: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(f"audit key file {path} is accessible by other users; run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise InvalidInput(f"audit key file {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"audit key file {path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load the key at ``path``, creating it (0600, in a 0700 directory) if there is none yet.

    Creation is atomic and never overwrites: the key is written to a private temporary file and
    hard-linked into place, so two processes starting at once end up sharing whichever key won.
    """
    if path.exists():
        return load_signing_key(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return load_signing_key(path)


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key in hex: what an auditor needs to verify a copy of the log."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def public_key_from_hex(text: str) -> Ed25519PublicKey:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise InvalidInput("an audit public key is 64 hex digits") from None
    if len(raw) != 32:
        raise InvalidInput("an audit public key is 64 hex digits")
    return Ed25519PublicKey.from_public_bytes(raw)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
