"""The broker's memory of the newest signed audit head it has seen, kept outside the database.

The head row in the database proves the chain was not cut back *unless* whoever cut it also put
back an older head they had saved (every head the broker ever signed passed through the
database). The broker therefore also writes the newest signed head it has seen to a file next to
its keys, out of reach of the database's administrators, and:

- refuses to append from a head older than the checkpoint, or from a chain that no longer holds
  the checkpointed record with its hash (``chain.AuditLog`` reads the file through ``Watch``);
- moves the checkpoint only forward, and only to a chain that still holds the checkpointed
  record (``Writer``): a log rolled back and then grown past the old number does not move it;
- ``check``, part of every ``audit verify``, reports a chain that lost or changed the
  checkpointed record as rolled back (or forked).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Connection

from jitgate import filelock
from jitgate.audit.head import SignedHead
from jitgate.errors import AuditIntegrityError
from jitgate.store.tables import audit_events

FILE_NAME = "audit-checkpoint.json"
DAMAGED = SignedHead(-1, "", "")

# The hash of record ``seq`` in the chain as stored, or None if there is no such record.
HashAt = Callable[[int], str | None]


@dataclass(frozen=True, slots=True)
class CheckpointResult:
    """``verdict`` is ``intact``, ``rolled_back``, ``forked`` or ``broken`` (an unusable checkpoint)."""

    ok: bool
    problem: str
    verdict: str = "intact"


def hash_at(conn: Connection) -> HashAt:
    """Look records up in ``conn``'s transaction."""

    def lookup(seq: int) -> str | None:
        found = conn.execute(_SELECT_HASH, {"seq": seq}).scalar()
        return None if found is None else str(found)

    return lookup


def compare(
    saved: SignedHead, head: SignedHead, lookup: HashAt, *, seen: str = "checkpointed"
) -> CheckpointResult:
    """Whether the chain ending at ``head`` still holds ``saved``: the one rule for every anchor."""
    if head.seq < saved.seq:
        return CheckpointResult(
            False, f"audit log rolled back: head {saved.seq} {seen}, database at {head.seq}", "rolled_back"
        )
    if head.seq == saved.seq:
        found: str | None = head.hash
    else:
        found = lookup(saved.seq) if saved.seq > 0 else saved.hash
    if found is None:
        return CheckpointResult(
            False, f"audit log rolled back: record {saved.seq} ({seen}) is missing", "rolled_back"
        )
    if found != saved.hash:
        return CheckpointResult(
            False,
            f"audit log forked: record {saved.seq} differs from the head {seen} "
            f"(rolled back and regrown, or rewritten)",
            "forked",
        )
    return CheckpointResult(True, f"{seen} head at record {saved.seq} matches")


class Watch:
    """The checkpoint as last written by any broker process, re-read only when the file changes.

    Checked before every append, so it costs one ``stat`` while the file stays as it was.
    """

    def __init__(self, path: Path, public_key: Ed25519PublicKey) -> None:
        self.path = path
        self._public = public_key
        self._stamp: tuple[int, int, int] | None = None
        self._head: SignedHead | None = None

    def latest(self) -> SignedHead | None:
        """The checkpointed head, or None if there is none; ``AuditIntegrityError`` if it is unusable."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._head = None, None
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            head = read(self.path)
            if head is not None and not head.signed_by(self._public):
                raise AuditIntegrityError(
                    f"the audit checkpoint {self.path} is damaged or not signed by this audit key; "
                    "run `jitgate audit verify`"
                )
            self._stamp, self._head = stamp, head
        return self._head


class Writer:
    """Keeps the checkpoint file current, at most once per ``interval`` seconds, never backwards."""

    def __init__(self, path: Path, interval: float = 1.0) -> None:
        self.path = path
        self._interval = interval
        self._last = -interval

    def due(self) -> bool:
        return time.monotonic() - self._last >= self._interval

    def update(self, head: SignedHead, lookup: HashAt) -> CheckpointResult:
        """Write ``head`` if its chain (``lookup``) holds the checkpointed record; else say why not.

        ``head`` must already be known to be signed by the audit key.
        """
        self._last = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Several broker processes may share the data directory: compare and replace under a
        # lock, or a slower one could put back an older head between another's read and write.
        with filelock.exclusive(self.path.with_name(f".{self.path.name}.lock")):
            saved = read(self.path)
            if saved == DAMAGED:
                return CheckpointResult(False, f"the audit checkpoint {self.path} is damaged", "broken")
            if saved is not None:
                result = compare(saved, head, lookup)
                if not result.ok:
                    return result
            if saved != head:
                write(self.path, head)
            return CheckpointResult(True, f"checkpoint at record {head.seq}")


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
    """The head in the file, None if there is no file, ``DAMAGED`` if it cannot be read as one."""
    try:
        data = json.loads(path.read_text())
        return SignedHead(int(data["seq"]), str(data["hash"]), str(data["signature"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return DAMAGED


def check(
    conn: Connection, path: Path, saved: SignedHead | None, public_key: Ed25519PublicKey, head: SignedHead
) -> CheckpointResult:
    """The verified chain ending at ``head`` must still hold ``saved``, read from ``path`` before."""
    if saved is None:
        return CheckpointResult(True, "no checkpoint yet")
    if not saved.signed_by(public_key):
        return CheckpointResult(
            False, f"checkpoint {path} is damaged or not signed by this audit key", "broken"
        )
    return compare(saved, head, hash_at(conn))


_SELECT_HASH = sa.select(audit_events.c.hash).where(audit_events.c.seq == sa.bindparam("seq"))
