"""Checking the audit chain end to end and naming the first record that is wrong.

``verify`` streams the records in ``seq`` order (bounded memory, whatever the length) and checks
that the numbering has no gap, that every record's hash matches its body and links to the record
before, that the filter columns agree with the hashed body, and that the chain ends exactly at the
head signed by the audit key. Without that signature a tail could be cut off unnoticed, since what
is left is a perfectly consistent shorter chain.

A signed head proves nothing against an old head saved and put back, so ``verify_anchored`` also
checks the chain against the heads kept outside the database: the checkpoint and any witness
files, and, given the recordings directory, the gateway's session recordings against the
``session.ended`` records that list them (``audit/recordings.py``). It is the one verdict of both
``jitgate audit verify`` and ``GET /api/v1/audit/verify``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Connection

from jitgate.audit import checkpoint, recordings, witness
from jitgate.audit.canonical import BODY_FIELDS, GENESIS_HASH, head_message, iso_utc, record_hash
from jitgate.audit.chain import SignedHead, read_head
from jitgate.settings import Settings
from jitgate.store.tables import audit_events

_FIELDS = frozenset(BODY_FIELDS)
SESSION_ENDED = "session.ended"


class Anchors(TypedDict):
    checkpoint_path: Path | None
    witness_files: Sequence[Path]
    recordings_root: Path | None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome: ``count`` records verified; on failure the first bad one and a one-line why.

    ``verdict`` is ``intact``, ``broken`` (records or head tampered with), ``rolled_back`` (the
    chain is behind a head kept outside the database), ``forked`` (it holds a different record
    under a number such a head names) or ``recordings_damaged`` (the chain is intact but session
    recordings it lists are missing or changed: ``problems`` has a line for each, ``problem``
    the first); ``anchors`` says what outside the chain was checked.
    """

    ok: bool
    count: int
    first_bad_seq: int | None
    problem: str
    verdict: str = "intact"
    anchors: str = ""
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "verdict": self.verdict,
            "count": self.count,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "problems": list(self.problems) if self.problems else [p for p in (self.problem,) if p],
            "anchors": self.anchors,
        }


def verify_anchored(
    conn: Connection,
    public_key: Ed25519PublicKey,
    *,
    checkpoint_path: Path | None,
    witness_files: Sequence[Path] = (),
    recordings_root: Path | None = None,
) -> VerifyResult:
    """``verify``, then the chain must hold the checkpointed head and every witnessed head, and
    the recordings under ``recordings_root`` (if given) must be those the chain lists."""
    # Read the outside heads first: whatever they name was committed before the chain is read,
    # so a head written meanwhile by a running broker is not mistaken for a rollback.
    saved = checkpoint.read(checkpoint_path) if checkpoint_path is not None else None
    witnessed = [witness.load(path, public_key) for path in witness_files]
    result, head = _verify(conn, public_key, 5000)
    if not result.ok:
        return result
    ending = head or SignedHead(0, GENESIS_HASH, "")
    notes = []
    if checkpoint_path is not None:
        anchored = checkpoint.check(conn, checkpoint_path, saved, public_key, ending)
        if not anchored.ok:
            return replace(result, ok=False, verdict=anchored.verdict, problem=anchored.problem)
        notes.append(anchored.problem)
    for heads in witnessed:
        found = witness.check(conn, heads, ending)
        if not found.ok:
            return replace(result, ok=False, verdict=found.verdict, problem=found.problem)
        notes.append(found.problem)
    if recordings_root is not None:
        checked = recordings.check(recordings_root, _sessions_ended(conn, ending.seq))
        if not checked.ok:
            return replace(
                result,
                ok=False,
                verdict="recordings_damaged",
                first_bad_seq=checked.first_bad_seq,
                problem=checked.problems[0],
                problems=checked.problems,
                anchors="; ".join(notes),
            )
        if checked.sessions:
            notes.append(checked.summary)
    return replace(result, anchors="; ".join(notes))


def anchors(
    settings: Settings, extra_witness_files: Sequence[Path] = (), recordings_root: Path | None = None
) -> Anchors:
    """What a broker with ``settings`` keeps outside the chain: its checkpoint, its witness files
    and its session recordings (``recordings_root``, by default the settings' directory)."""
    files = [p for p in (witness.file_path(spec) for spec in settings.audit_witness) if p is not None]
    return {
        "checkpoint_path": checkpoint.default_path(settings.data_dir),
        "witness_files": [*files, *(p for p in extra_witness_files if p not in files)],
        "recordings_root": recordings_root or settings.recordings_dir,
    }


def _sessions_ended(conn: Connection, last: int) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """``(seq, details)`` of every ``session.ended`` record up to ``last``, streamed."""
    query = (
        sa.select(audit_events.c.seq, audit_events.c.body)
        .where(audit_events.c.action == SESSION_ENDED, audit_events.c.seq <= last)
        .order_by(audit_events.c.seq)
        .execution_options(yield_per=1000)
    )
    result = conn.execute(query)
    try:
        for seq, body in result:
            details = json.loads(body)["details"]  # the chain was verified: bodies are records
            yield seq, details if isinstance(details, dict) else {}
    finally:
        result.close()


def verify(conn: Connection, public_key: Ed25519PublicKey, *, batch: int = 5000) -> VerifyResult:
    """Verify the whole chain as seen by ``conn``'s transaction against ``public_key``."""
    return _verify(conn, public_key, batch)[0]


def _verify(
    conn: Connection, public_key: Ed25519PublicKey, batch: int
) -> tuple[VerifyResult, SignedHead | None]:
    head = read_head(conn)
    query = _records_query()
    if head is not None:
        # On PostgreSQL (read committed) appends may commit while we read; the head read first
        # bounds a snapshot that is complete, since every append commits with its head update.
        query = query.where(audit_events.c.seq <= head.seq)

    try:
        last, last_hash = _walk(conn, query, batch)
        _check_head(conn, public_key, head, last, last_hash)
    except _Broken as broken:
        return VerifyResult(False, broken.count, broken.seq, broken.problem, "broken"), head
    return VerifyResult(True, last, None, ""), head


def verify_records(conn: Connection, *, batch: int = 5000) -> VerifyResult:
    """Only the records, whatever the head says: numbering, hashes, links (for ``audit repair``)."""
    try:
        last, _ = _walk(conn, _records_query(), batch)
    except _Broken as broken:
        return VerifyResult(False, broken.count, broken.seq, broken.problem)
    return VerifyResult(True, last, None, "")


def _records_query() -> sa.Select[Any]:
    return sa.select(
        audit_events.c.seq,
        audit_events.c.at,
        audit_events.c.actor,
        audit_events.c.action,
        audit_events.c.request_id,
        audit_events.c.grant_id,
        audit_events.c.role,
        audit_events.c.body,
        audit_events.c.prev_hash,
        audit_events.c.hash,
    ).order_by(audit_events.c.seq)


def _walk(conn: Connection, query: sa.Select[Any], batch: int) -> tuple[int, str]:
    """Check every record in order; return the last seq and hash."""
    expected = 1
    prev = GENESIS_HASH
    result = conn.execute(query.execution_options(yield_per=batch))
    try:
        for row in result:
            _check_record(row, expected, prev)
            prev = row.hash
            expected += 1
    finally:
        result.close()
    return expected - 1, prev


class _Broken(Exception):
    """The first problem found; ``count`` records before ``seq`` checked out."""

    def __init__(self, count: int, seq: int, problem: str) -> None:
        super().__init__(problem)
        self.count = count
        self.seq = seq
        self.problem = problem


def _check_record(row: Sequence[Any], expected: int, prev: str) -> None:
    seq, at, actor, action, request_id, grant_id, role, body, prev_hash, digest = row
    done = expected - 1
    if seq > expected:
        missing = f"record {expected}" if seq == expected + 1 else f"records {expected}..{seq - 1}"
        jump = f"the chain starts at {seq}" if done == 0 else f"the chain jumps from {done} to {seq}"
        raise _Broken(done, expected, f"{missing} missing: {jump} (deleted?)")
    if seq != expected:
        raise _Broken(done, seq, f"record {seq}: numbered out of sequence (expected {expected})")
    if record_hash(prev_hash, body) != digest:
        raise _Broken(done, seq, f"record {seq}: hash does not match its contents (edited?)")
    fields = _parse_body(body, seq, done)
    if fields["seq"] != seq:
        raise _Broken(done, seq, f"record {seq}: its body says it is record {fields['seq']} (reordered?)")
    if fields["prev"] != prev_hash:
        raise _Broken(
            done, seq, f"record {seq}: prev_hash column differs from the prev in its body (edited?)"
        )
    if prev_hash != prev:
        before = "the start of the chain" if seq == 1 else f"record {seq - 1}"
        raise _Broken(done, seq, f"record {seq}: does not link to {before} (rewritten or reordered?)")
    columns = {
        "at": iso_utc(at),
        "actor": actor,
        "action": action,
        "request_id": request_id,
        "grant_id": grant_id,
        "role": role,
    }
    for name, value in columns.items():
        if fields[name] != value:
            raise _Broken(
                done,
                seq,
                f"record {seq}: column {name} is {value!r} but its body says {fields[name]!r} (edited?)",
            )


def _parse_body(body: str, seq: int, done: int) -> dict[str, Any]:
    try:
        fields = json.loads(body)
    except ValueError:
        raise _Broken(done, seq, f"record {seq}: body is not JSON (edited?)") from None
    if not isinstance(fields, dict) or fields.keys() != _FIELDS:
        raise _Broken(done, seq, f"record {seq}: body does not have the fields of an audit record (edited?)")
    return fields


def _check_head(
    conn: Connection, public_key: Ed25519PublicKey, head: SignedHead | None, last: int, last_hash: str
) -> None:
    if head is None:
        if last > 0:
            raise _Broken(
                last, last + 1, f"the signed head is missing but the chain has {last} records (head deleted?)"
            )
        return
    try:
        public_key.verify(bytes.fromhex(head.signature), head_message(head.seq, head.hash))
    except (InvalidSignature, ValueError):
        raise _Broken(
            last,
            last + 1,
            f"the head (record {head.seq}) is not signed by this audit key: it was rewritten "
            f"(to hide a tail cut after record {last}?) or this is the wrong key",
        ) from None
    if last < head.seq:
        raise _Broken(
            last,
            last + 1,
            f"chain ends at record {last} but the signed head says {head.seq} (tail truncated?)",
        )
    if last_hash != head.hash:
        raise _Broken(
            last - 1, last, f"record {last}: hash differs from the signed head's (record rewritten?)"
        )
    beyond = conn.execute(sa.select(sa.func.max(audit_events.c.seq))).scalar_one()
    if beyond is not None and beyond > head.seq:
        # Read the head again: an append that committed after our first read has moved it.
        now = read_head(conn)
        if now is None or beyond > now.seq:
            raise _Broken(
                last,
                head.seq + 1,
                f"records after {head.seq} are not covered by the signed head (added without the audit key?)",
            )
