"""The broker's SSH certificate authorities on disk: a user CA and a host CA, both Ed25519.

Layout of ``DATA_DIR/ca/``: one PKCS#8 PEM file per private key (mode 0600, encrypted with the
configured passphrase when there is one) and ``index.json`` listing every key with its public
line, so that the trusted public keys can be shown without decrypting anything.

Rotation creates a new active key and keeps the old one trusted (``previous``) until its
``retire_after``, so targets that still trust only the old key keep accepting the certificates
already out there while the new public line is rolled out. Several broker processes may share the
directory: changes are made under an exclusive file lock and every reader notices a new index.
The time is always passed in (``now``); this module never reads the clock.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from jitgate import filelock
from jitgate.errors import InvalidInput, NotFound, ProviderError
from jitgate.providers.ssh.certs import CaSigner
from jitgate.providers.ssh.wire import fingerprint

INDEX = "index.json"
INDEX_RECHECK_SECONDS = 1.0
_LOCK = ".lock"
_FORMAT = 1


class CaKind(StrEnum):
    USER = "user"
    HOST = "host"


class KeyState(StrEnum):
    ACTIVE = "active"
    PREVIOUS = "previous"
    RETIRED = "retired"


class CaKeyUnavailable(ProviderError):
    """A CA private key cannot be used: missing or wrong passphrase, unsafe file mode, damaged file."""

    code = "ca_key_unavailable"


@dataclass(frozen=True, slots=True)
class CaKeyInfo:
    """Public facts about one CA key; never holds private material."""

    id: str
    kind: CaKind
    created_at: datetime
    state: KeyState
    retire_after: datetime | None
    public_line: str

    @property
    def public_blob(self) -> bytes:
        return base64.b64decode(self.public_line.split()[1])

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_blob)

    def trusted_at(self, now: datetime) -> bool:
        """Active, or previous and not yet past ``retire_after``."""
        if self.state is KeyState.ACTIVE:
            return True
        return self.state is KeyState.PREVIOUS and self.retire_after is not None and now < self.retire_after

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "created_at": self.created_at.isoformat(),
            "state": self.state.value,
            "retire_after": self.retire_after.isoformat() if self.retire_after else None,
            "public": self.public_line,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaKeyInfo:
        retire = data.get("retire_after")
        return cls(
            id=str(data["id"]),
            kind=CaKind(data["kind"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            state=KeyState(data["state"]),
            retire_after=datetime.fromisoformat(retire) if retire else None,
            public_line=str(data["public"]),
        )


_FOREVER = datetime.max.replace(tzinfo=UTC)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise InvalidInput("now must be a timezone-aware datetime")
    return now


class CaStore:
    """The CA keys in ``directory``. Thread-safe; keys are created on first use.

    ``passphrase`` encrypts new keys (PKCS#8, best available encryption) and decrypts existing
    ones; without it keys are stored unencrypted, still 0600. A key stored unencrypted is
    re-encrypted in place as soon as a passphrase is configured.

    With ``create=False`` the store only reads: a kind without an active key is ``NotFound``,
    rotation is refused and nothing is ever written, for commands that show a CA rather than run one.
    """

    def __init__(
        self, directory: Path, passphrase: str | bytes | None = None, *, create: bool = True
    ) -> None:
        if passphrase is not None and not passphrase:
            raise InvalidInput("the CA passphrase is empty")
        self._dir = Path(directory)
        self._create_missing = create
        self._passphrase = passphrase.encode() if isinstance(passphrase, str) else passphrase
        self._mutex = threading.RLock()
        self._index_stamp: tuple[int, int, int] | None = None
        self._checked_at = 0.0
        self._keys: tuple[CaKeyInfo, ...] = ()
        self._signers: dict[str, CaSigner] = {}
        self._lines: dict[CaKind, tuple[tuple[CaKeyInfo, ...], datetime, datetime, list[str]]] = {}

    def __repr__(self) -> str:
        return f"CaStore({str(self._dir)!r}, encrypted={self._passphrase is not None})"

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def encrypted(self) -> bool:
        return self._passphrase is not None

    # -- reading ------------------------------------------------------------------------------

    def all_keys(self) -> tuple[CaKeyInfo, ...]:
        """Every key the index lists, of both kinds and every state."""
        with self._mutex:
            self._refresh()
            return self._keys

    def keys(self, kind: CaKind | str, now: datetime) -> tuple[CaKeyInfo, ...]:
        """The keys of ``kind`` still trusted at ``now``, the active one first (created if none)."""
        kind = CaKind(kind)
        self.active(kind, now)
        trusted = [k for k in self.all_keys() if k.kind is kind and k.trusted_at(now)]
        trusted.sort(key=lambda k: (k.state is not KeyState.ACTIVE, -k.created_at.timestamp()))
        return tuple(trusted)

    def public_lines(self, kind: CaKind | str, now: datetime) -> list[str]:
        """What targets should trust (``TrustedUserCAKeys``, ``@cert-authority``), active first."""
        kind = CaKind(kind)
        with self._mutex:
            self._refresh()
            cached = self._lines.get(kind)
            # Every certificate answer carries these lines: reuse them while the index is the same
            # and no previous key has reached its retire_after since they were worked out.
            if cached is not None and cached[0] is self._keys and cached[1] <= now < cached[2]:
                return list(cached[3])
            lines = [k.public_line for k in self.keys(kind, now)]
            ends = [k.retire_after for k in self._keys if k.retire_after is not None and k.retire_after > now]
            self._lines[kind] = (self._keys, now, min(ends, default=_FOREVER), lines)
            return list(lines)

    def known_hosts_lines(self, host_patterns: Sequence[str], now: datetime) -> list[str]:
        """``@cert-authority PATTERNS KEY`` lines trusting the host CA for the given host patterns."""
        if not host_patterns or any(not p or "," in p or p.split() != [p] for p in host_patterns):
            raise InvalidInput("host patterns must be non-empty words without commas")
        patterns = ",".join(host_patterns)
        return [f"@cert-authority {patterns} {line}" for line in self.public_lines(CaKind.HOST, now)]

    def key_by_fingerprint(self, value: str) -> CaKeyInfo | None:
        return next((k for k in self.all_keys() if k.fingerprint == value), None)

    def active(self, kind: CaKind | str, now: datetime) -> CaKeyInfo:
        """The key that signs new certificates of ``kind``, created on first use."""
        kind = CaKind(kind)
        found = self._find_active(kind)
        if found is not None:
            return found
        if not self._create_missing:
            raise NotFound(f"no {kind.value} CA in {self._dir}")
        with self._mutex, self._file_lock():
            self._refresh(force=True)
            found = self._find_active(kind)
            if found is None:
                found = self._create(kind, _aware(now))
                self._write_index((*self._keys, found))
            return found

    def signer(self, kind: CaKind | str, now: datetime) -> CaSigner:
        """A ready-to-sign form of the active key (decrypted once, then cached)."""
        info = self.active(kind, now)
        with self._mutex:
            cached = self._signers.get(info.id)
            if cached is None:
                cached = CaSigner(self._load_private(info))
                self._signers[info.id] = cached
            return cached

    # -- changing -----------------------------------------------------------------------------

    def rotate(self, kind: CaKind | str, overlap: timedelta, now: datetime) -> CaKeyInfo:
        """Make a new active key; the old one stays trusted until ``now + overlap``.

        Previous keys already past their ``retire_after`` become ``retired`` and their private
        key files are deleted: nothing trusts them any more.
        """
        kind = CaKind(kind)
        now = _aware(now)
        if overlap < timedelta(0):
            raise InvalidInput("the rotation overlap cannot be negative")
        if not self._create_missing:
            raise InvalidInput(f"the CA store in {self._dir} was opened read-only")
        with self._mutex, self._file_lock():
            self._refresh(force=True)
            kept = [self._demoted(key, kind, now + overlap, now) for key in self._keys]
            new = self._create(kind, now)
            self._write_index((*kept, new))
            return new

    # -- internals ----------------------------------------------------------------------------

    def _demoted(self, key: CaKeyInfo, kind: CaKind, retire_after: datetime, now: datetime) -> CaKeyInfo:
        if key.kind is not kind:
            return key
        if key.state is KeyState.ACTIVE:
            key = replace(key, state=KeyState.PREVIOUS, retire_after=retire_after)
        if key.state is KeyState.PREVIOUS and not key.trusted_at(now):
            key = replace(key, state=KeyState.RETIRED)
            (self._dir / f"{key.id}.key").unlink(missing_ok=True)
            self._signers.pop(key.id, None)
        return key

    def _find_active(self, kind: CaKind) -> CaKeyInfo | None:
        return next((k for k in self.all_keys() if k.kind is kind and k.state is KeyState.ACTIVE), None)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        self._ensure_dir()
        with filelock.exclusive(self._dir / _LOCK):
            yield

    def _ensure_dir(self) -> None:
        if not self._dir.is_dir():
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _refresh(self, *, force: bool = False) -> None:
        # Another process (a replica, `jitgate ca rotate --data-dir`) may change the index; looking
        # once a second is soon enough and keeps a stat() off every certificate.
        now = time.monotonic()
        if not force and self._index_stamp is not None and now - self._checked_at < INDEX_RECHECK_SECONDS:
            return
        self._checked_at = now
        path = self._dir / INDEX
        try:
            st = path.stat()
        except FileNotFoundError:
            self._index_stamp, self._keys = None, ()
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if not force and stamp == self._index_stamp:
            return
        try:
            data = json.loads(path.read_text())
            if data.get("format") != _FORMAT:
                raise ValueError("unknown format")
            keys = tuple(CaKeyInfo.from_json(item) for item in data["keys"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CaKeyUnavailable(f"CA index {path} is unreadable ({type(exc).__name__})") from None
        self._index_stamp, self._keys = stamp, keys

    def _write_index(self, keys: tuple[CaKeyInfo, ...]) -> None:
        body = json.dumps({"format": _FORMAT, "keys": [k.to_json() for k in keys]}, indent=2) + "\n"
        _atomic_write(self._dir / INDEX, body.encode(), 0o644)
        self._refresh(force=True)

    def _create(self, kind: CaKind, now: datetime) -> CaKeyInfo:
        key = Ed25519PrivateKey.generate()
        key_id = f"{kind.value}-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
        _atomic_write(self._dir / f"{key_id}.key", self._pem(key), 0o600)
        signer = CaSigner(key)
        self._signers[key_id] = signer
        return CaKeyInfo(
            id=key_id,
            kind=kind,
            created_at=now,
            state=KeyState.ACTIVE,
            retire_after=None,
            public_line=signer.public_line(f"jitgate-{kind.value}-ca:{key_id}"),
        )

    def _pem(self, key: Ed25519PrivateKey) -> bytes:
        encryption = (
            BestAvailableEncryption(self._passphrase) if self._passphrase is not None else NoEncryption()
        )
        return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)

    def _load_private(self, info: CaKeyInfo) -> Ed25519PrivateKey:
        path = self._dir / f"{info.id}.key"
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except FileNotFoundError:
            raise CaKeyUnavailable(f"CA key {info.id} is missing its private key file") from None
        if stat.S_IMODE(mode) & 0o077:
            raise CaKeyUnavailable(
                f"CA key file {path} is accessible to others (mode {stat.S_IMODE(mode):o}); chmod 600 it"
            )
        encrypted = b"ENCRYPTED PRIVATE KEY" in data
        if encrypted and self._passphrase is None:
            raise CaKeyUnavailable(f"CA key {info.id} is encrypted and no CA passphrase is configured")
        try:
            key = load_pem_private_key(data, self._passphrase if encrypted else None)
        except ValueError:
            what = "the CA passphrase is wrong" if encrypted else "the file is damaged"
            raise CaKeyUnavailable(f"cannot load CA key {info.id}: {what}") from None
        if not isinstance(key, Ed25519PrivateKey) or CaSigner(key).public_blob != info.public_blob:
            raise CaKeyUnavailable(f"CA key file {path} does not hold the key its index names")
        if not encrypted and self._passphrase is not None and self._create_missing:
            with self._file_lock():
                _atomic_write(path, self._pem(key), 0o600)
        return key


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write via a fresh temporary file created with ``mode`` (so never wider, whatever the umask)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
