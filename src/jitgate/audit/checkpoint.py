"""A copy of the signed audit head kept outside the database.

The head row in the database proves the chain was not cut back *unless* whoever cut it also put
back an older head they had saved (every head the broker ever signed passed through the
database). The broker therefore also writes the newest signed head to a file next to its keys,
out of reach of the database's administrators. ``verify`` then also requires the chain to still
contain the checkpointed record with the same hash: rolling back or emptying the log shows.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Connection

from jitgate import filelock
from jitgate.audit.canonical import head_message
from jitgate.audit.chain import SignedHead
from jitgate.store.tables import audit_events

FILE_NAME = "audit-checkpoint.json"


@dataclass(frozen=True, slots=True)
class CheckpointResult:
    ok: bool
    problem: str


class Writer:
    """Keeps the checkpoint file current, at most once per ``interval`` seconds, never backwards."""

    def __init__(self, path: Path, interval: float = 1.0) -> None:
        self.path = path
        self._interval = interval
        self._last = -interval

    def due(self) -> bool:
        return time.monotonic() - self._last >= self._interval

    def update(self, head: SignedHead) -> bool:
        """Write ``head`` unless it is already there; refuse (return False) if it is behind."""
        self._last = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Several broker processes may share the data directory: compare and replace under a
        # lock, or a slower one could put back an older head between another's read and write.
        with filelock.exclusive(self.path.with_name(f".{self.path.name}.lock")):
            saved = read(self.path)
            if saved is not None and head.seq < saved.seq:
                return False
            if saved != head:
                write(self.path, head)
            return True


def default_path(data_dir: Path) -> Path:
    return data_dir / "keys" / FILE_NAME


def write(path: Path, head: SignedHead) -> None:
    """Replace the checkpoint atomically (write a private temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"seq": head.seq, "hash": head.hash, "signature": head.signature}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def read(path: Path) -> SignedHead | None:
    try:
        data = json.loads(path.read_text())
        return SignedHead(int(data["seq"]), str(data["hash"]), str(data["signature"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return SignedHead(-1, "", "")


def check(conn: Connection, path: Path, public_key: Ed25519PublicKey) -> CheckpointResult:
    """The chain must still hold the checkpointed record, unchanged."""
    saved = read(path)
    if saved is None:
        return CheckpointResult(True, "no checkpoint yet")
    try:
        public_key.verify(bytes.fromhex(saved.signature), head_message(saved.seq, saved.hash))
    except (InvalidSignature, ValueError):
        return CheckpointResult(False, f"checkpoint {path} is damaged or not signed by this audit key")
    found = conn.execute(sa.select(audit_events.c.hash).where(audit_events.c.seq == saved.seq)).scalar()
    if found is None:
        return CheckpointResult(
            False,
            f"record {saved.seq}, checkpointed outside the database, is missing (rolled back or emptied?)",
        )
    if found != saved.hash:
        return CheckpointResult(False, f"record {saved.seq} differs from its checkpoint (log rewritten?)")
    return CheckpointResult(True, f"checkpoint at record {saved.seq} matches")
