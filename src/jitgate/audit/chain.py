"""Appending to the audit hash chain, inside the caller's transaction.

An audit record is committed exactly when the change it describes is, because it is written on
the caller's connection and never anywhere else. Appends are serialized by the head row: on
PostgreSQL it is locked ``FOR UPDATE``; on SQLite the write transaction (``BEGIN IMMEDIATE``)
already holds the database's only write lock. The lock is held until the caller commits, so
callers append their record last, after their own row locks, and keep the transaction short.

Before extending the chain the current head's signature is checked (unless this process signed
it): otherwise the broker would re-sign, and so launder, a head edited to hide a truncated tail.
A head that is signed but older than one the broker has already seen (an old head saved and put
back after cutting the records behind it) is refused too, as ``AuditRolledBack``: the broker
remembers the newest head it saw in memory and, across processes and restarts, in the checkpoint
file (``checkpoint.py``). Every refusal to extend the chain is an ``AuditIntegrityError``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from jitgate.audit import checkpoint
from jitgate.audit.canonical import (
    GENESIS_HASH,
    check_no_secrets,
    check_text,
    head_message,
    iso_utc,
    normalize,
    record_hash,
)
from jitgate.audit.head import SignedHead
from jitgate.errors import AuditIntegrityError, AuditRolledBack
from jitgate.store.db import after_commit
from jitgate.store.tables import audit_events, audit_head

__all__ = ["HEAD_ID", "AuditLog", "Event", "SignedHead", "read_head"]
log = logging.getLogger("jitgate.audit")

HEAD_ID = 1

_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
# Column widths of audit_events; a longer value would be cut or refused by the database.
COLUMN_LIMITS = {"actor": 128, "action": 64, "request_id": 32, "grant_id": 32, "role": 64}


@dataclass(frozen=True, slots=True)
class Event:
    """One record to append, already checked: sizes, action form, no secrets, plain JSON details."""

    at: datetime
    actor: str
    action: str
    request_id: str | None
    grant_id: str | None
    role: str | None
    target: str | None
    details: dict[str, Any]

    @classmethod
    def checked(
        cls,
        *,
        at: datetime,
        actor: str,
        action: str,
        request_id: str | None = None,
        grant_id: str | None = None,
        role: str | None = None,
        target: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> Event:
        """Raises ``ValueError`` for a malformed record or details that look like a secret."""
        fields = {
            "actor": actor,
            "action": action,
            "request_id": request_id,
            "grant_id": grant_id,
            "role": role,
        }
        for name, value in fields.items():
            if value is not None and not 0 < len(value) <= COLUMN_LIMITS[name]:
                raise ValueError(f"audit {name} must be 1 to {COLUMN_LIMITS[name]} characters")
        if not _ACTION.fullmatch(action):
            raise ValueError(f"audit action {action!r} is not of the form 'noun.verb'")
        # The columns are caller-facing too (a target or id someone typed): no secret in them either.
        for name, value in (("actor", actor), ("request_id", request_id), ("grant_id", grant_id),
                            ("role", role), ("target", target)):  # fmt: skip
            if value is not None:
                check_text(value, name)
        raw = dict(details or {})
        check_no_secrets(raw)
        return cls(at, actor, action, request_id, grant_id, role, target, normalize(raw, "details"))

    def body(self, seq: int, prev: str) -> str:
        """This record's canonical body as record ``seq`` after ``prev``: exactly ``event_body``.

        ``checked`` already normalized the details, and normalizing is idempotent, so the
        canonical text is the plain JSON dump of the fields, without walking the details again.
        """
        fields = {
            "seq": seq,
            "at": iso_utc(self.at),
            "actor": self.actor,
            "action": self.action,
            "request_id": self.request_id,
            "grant_id": self.grant_id,
            "role": self.role,
            "target": self.target,
            "details": self.details,
            "prev": prev,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class AuditLog:
    """Writes audit records; one instance per process, safe to share between threads."""

    def __init__(self, signing_key: Ed25519PrivateKey, *, checkpoint_path: Path | None = None) -> None:
        """``checkpoint_path``: the checkpoint file shared by every broker process of this log."""
        self._key = signing_key
        self._public = signing_key.public_key()
        self._tag_key = hashlib.sha256(
            b"jitgate-withheld-tag-v1\x00" + signing_key.private_bytes_raw()
        ).digest()
        self._park_key = hashlib.sha256(
            b"jitgate-parked-seal-v1\x00" + signing_key.private_bytes_raw()
        ).digest()
        # The last head this process signed: a head read back equal to it needs no verification.
        self._signed: SignedHead | None = None
        # The newest head this process knows was committed: the log may never go back behind it.
        self._seen: SignedHead | None = None
        self._seen_lock = threading.Lock()
        self._checkpoint = checkpoint.Watch(checkpoint_path, self._public) if checkpoint_path else None
        self.problem: str | None = None
        """Why the chain was last refused, until a later check passes: the broker's health."""

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def withheld_tag(self, value: str) -> str:
        """A keyed digest naming a value withheld from the log (``audit/redact.py``).

        Equal values get equal tags, so an auditor sees the same withheld token tried again; keyed
        by the audit key, so nobody holding only the log can test guesses (a weak password) against it.
        """
        data = value.encode("utf-8", "surrogatepass")
        return hmac.new(self._tag_key, data, hashlib.sha256).hexdigest()[:16]

    def parked_seal(self, data: bytes) -> str:
        """A keyed digest over a record parked outside the chain (``audit/backlog.py``), so that a
        row written into the backlog by anyone but a broker is never appended and signed."""
        return hmac.new(self._park_key, data, hashlib.sha256).hexdigest()

    def append(
        self,
        conn: Connection,
        *,
        at: datetime,
        actor: str,
        action: str,
        request_id: str | None = None,
        grant_id: str | None = None,
        role: str | None = None,
        target: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> int:
        """Add one record in the transaction open on ``conn`` and return its ``seq``.

        Raises ``ValueError`` for a malformed record or details that look like a secret, and
        ``AuditIntegrityError`` (a ``StorageUnavailable``) if the stored chain no longer matches its
        signed head (tampering, or a different audit key), and its subclass ``AuditRolledBack`` if
        the head is older than one already seen; in every case the caller's transaction must roll
        back.
        """
        event = Event.checked(
            at=at,
            actor=actor,
            action=action,
            request_id=request_id,
            grant_id=grant_id,
            role=role,
            target=target,
            details=details,
        )
        return self.append_many(conn, [event])[-1]

    def append_many(self, conn: Connection, events: Sequence[Event]) -> list[int]:
        """Add checked records in order, under one head lock and one head signature."""
        if not conn.in_transaction():
            raise RuntimeError("audit records are written inside the caller's transaction; begin one first")
        if not events:
            return []
        head = self._lock_head(conn)
        prev, seq = head.hash, head.seq
        rows: list[dict[str, Any]] = []
        for event in events:
            seq += 1
            body = event.body(seq, prev)
            digest = record_hash(prev, body)
            rows.append(
                {
                    "seq": seq,
                    "at": event.at,
                    "actor": event.actor,
                    "action": event.action,
                    "request_id": event.request_id,
                    "grant_id": event.grant_id,
                    "role": event.role,
                    "body": body,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        try:
            conn.execute(_INSERT_EVENT, rows)
        except IntegrityError:
            raise self._refuse(
                f"audit record {head.seq + 1} already exists although the signed head says {head.seq}; "
                "the audit log was tampered with, run `jitgate audit verify`"
            ) from None
        new_head = self._sign(seq, prev)
        conn.execute(
            _UPDATE_HEAD,
            {"new_seq": new_head.seq, "new_hash": new_head.hash, "new_signature": new_head.signature},
        )
        self._signed = new_head
        after_commit(conn, lambda: self._saw(new_head))
        return [row["seq"] for row in rows]

    def reseal(self, conn: Connection, *, seq: int, digest: str) -> SignedHead:
        """Sign a new head over the stored chain as it ends now (record ``seq``, hash ``digest``).

        Only for ``jitgate audit repair``, after an operator looked at the damage: the head is
        replaced (or put back), no record is touched, and the repair appends a record of it.
        """
        if not conn.in_transaction():
            raise RuntimeError("resealing happens inside the caller's transaction; begin one first")
        head = self._sign(seq, digest)
        values = {"new_seq": head.seq, "new_hash": head.hash, "new_signature": head.signature}
        if conn.execute(_UPDATE_HEAD, values).rowcount == 0:
            conn.execute(
                audit_head.insert().values(id=HEAD_ID, seq=head.seq, hash=head.hash, signature=head.signature)
            )
        self._signed = head
        with self._seen_lock:
            # A repair may move the head back on purpose: this process goes on from the new head,
            # and no longer holds the checkpoint file against it (the repair rewrites that after
            # its commit; other broker processes must be restarted to forget what they saw).
            self._seen = head
            self._checkpoint = None
        return head

    def check_head(self, conn: Connection) -> SignedHead | None:
        """The stored head if it is signed and not behind any head seen; else ``AuditIntegrityError``.

        The scheduler calls this every pass, so that the broker's health shows a rolled-back log
        even while nothing is appended.
        """
        seen = self._reference()
        head = read_head(conn)
        if head is None:
            return None
        self._check_head(conn, head, seen)
        return head

    def _saw(self, head: SignedHead) -> None:
        with self._seen_lock:
            if self._seen is None or head.seq > self._seen.seq:
                self._seen = head

    def _refuse(
        self, message: str, error: type[AuditIntegrityError] = AuditIntegrityError
    ) -> AuditIntegrityError:
        # Logged once per change of state by workflow/audit_state.py, not once per refusal here.
        self.problem = message
        return error(message)

    def _check_signed(self, head: SignedHead) -> None:
        if head != self._signed and not head.signed_by(self._public):
            raise self._refuse(
                f"the audit head (record {head.seq}) is not signed by this broker's audit key: "
                "wrong key file, or the head was edited; run `jitgate audit verify`"
            )

    def _reference(self) -> SignedHead | None:
        """The newest head seen here or checkpointed by any process.

        Taken *before* the head is read: every head it names was committed by then, so the head
        read afterwards can only be as new or newer, unless the log was rolled back.
        """
        seen = self._seen
        try:
            filed = self._checkpoint.latest() if self._checkpoint is not None else None
        except AuditIntegrityError as exc:
            raise self._refuse(exc.message) from None
        if filed is not None and (seen is None or filed.seq > seen.seq):
            return filed
        return seen

    def _check_not_behind(self, conn: Connection, head: SignedHead, seen: SignedHead | None) -> None:
        """Refuse a head behind ``seen`` or on a chain that no longer holds it."""
        if seen is not None and seen != head:
            # Only a head beyond the one seen costs a look-up: that the seen record is still there.
            verdict = checkpoint.compare(seen, head, checkpoint.hash_at(conn), seen="seen")
            if not verdict.ok:
                raise self._refuse(f"{verdict.problem}; run `jitgate audit verify`", AuditRolledBack)
        self._saw(head)
        self.problem = None

    def _sign(self, seq: int, digest: str) -> SignedHead:
        return SignedHead(seq, digest, self._key.sign(head_message(seq, digest)).hex())

    def check(self, conn: Connection) -> None:
        """Raise ``AuditIntegrityError`` if an append on ``conn`` would be refused now (no lock taken).

        The same checks as an append, for health reports and for finding out that a broken log
        was repaired; a missing head with no records is an empty log, which is fine.
        """
        seen = self._reference()
        head = read_head(conn)
        if head is None:
            last = conn.execute(sa.select(sa.func.max(audit_events.c.seq))).scalar_one()
            if last is not None:
                raise self._refuse(_head_missing(last).message)
            return
        self._check_head(conn, head, seen)

    def _lock_head(self, conn: Connection) -> SignedHead:
        seen = self._reference()
        head = read_head(conn, for_update=True)
        if head is None:
            head = self._create_head(conn)
        self._check_head(conn, head, seen)
        return head

    def _check_head(self, conn: Connection, head: SignedHead, seen: SignedHead | None) -> None:
        """Whether ``head`` may be extended: signed by this broker's key, and not behind (nor off the
        chain of) ``seen``, the newest head known to be committed. Every check an append makes is
        here, so that ``check`` (health, the scheduler) sees what an append would refuse."""
        self._check_signed(head)
        self._check_not_behind(conn, head, seen)

    def _create_head(self, conn: Connection) -> SignedHead:
        """Start an empty chain, or refuse if records exist without a head (it was deleted)."""
        genesis = self._sign(0, GENESIS_HASH)
        values = {"id": HEAD_ID, "seq": 0, "hash": genesis.hash, "signature": genesis.signature}
        # Two first appends at once on PostgreSQL: the second waits for the first's row, then
        # inserts nothing and goes on to lock the row the first committed.
        name = conn.dialect.name
        if name in {"postgresql", "sqlite"}:
            dialect_insert = postgresql.insert if name == "postgresql" else sqlite.insert
            # rowcount is not reliable here (psycopg reports -1), RETURNING is.
            returned = conn.execute(
                dialect_insert(audit_head).values(values).on_conflict_do_nothing().returning(audit_head.c.id)
            )
            created = returned.first() is not None
        else:
            conn.execute(audit_head.insert().values(values))
            created = True
        if created:
            # No head existed, committed or in flight; records now would mean it was deleted.
            last = conn.execute(sa.select(sa.func.max(audit_events.c.seq))).scalar_one()
            if last is not None:
                raise self._refuse(_head_missing(last).message)
        head = read_head(conn, for_update=True)
        if head is None:
            raise AuditIntegrityError("the audit head could not be created")
        return head


def _head_missing(last: int) -> AuditIntegrityError:
    return AuditIntegrityError(
        f"the audit head is missing but records up to {last} exist; "
        "the audit log was tampered with, run `jitgate audit verify`"
    )


def read_head(conn: Connection, *, for_update: bool = False) -> SignedHead | None:
    """The signed head as stored, or ``None`` if there is none (nothing was ever appended)."""
    locking = for_update and conn.dialect.name != "sqlite"
    row = conn.execute(_SELECT_HEAD_FOR_UPDATE if locking else _SELECT_HEAD).one_or_none()
    if row is None:
        return None
    return SignedHead(int(row.seq), row.hash, row.signature)


# Built once: appends are hot, and building statements costs more than running them.
_INSERT_EVENT = audit_events.insert()
_UPDATE_HEAD = (
    audit_head.update()
    .where(audit_head.c.id == HEAD_ID)
    .values(
        seq=sa.bindparam("new_seq"), hash=sa.bindparam("new_hash"), signature=sa.bindparam("new_signature")
    )
)
_SELECT_HEAD = sa.select(audit_head.c.seq, audit_head.c.hash, audit_head.c.signature).where(
    audit_head.c.id == HEAD_ID
)
_SELECT_HEAD_FOR_UPDATE = _SELECT_HEAD.with_for_update()
