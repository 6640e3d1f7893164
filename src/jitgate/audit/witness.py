"""Signed audit heads sent to witnesses outside the broker, and checking a chain against them.

A witness keeps copies of the heads the broker signed where the database's administrators cannot
reach them: a file on another disk or host mount, a webhook, syslog. Each copy is one JSON line
(``line``); ``jitgate audit verify --witness FILE`` reads such lines back (``load``) and requires
the chain to contain every witnessed head (``check``): the same number must carry the same hash,
and the chain must reach at least the newest witnessed number. Otherwise the log was rolled back,
or forked (rolled back and regrown, or rewritten).

The senders, which run in the broker's background, are in ``workflow/witness.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.engine import Connection

from jitgate.audit import checkpoint
from jitgate.audit.canonical import iso_utc
from jitgate.audit.checkpoint import CheckpointResult
from jitgate.audit.head import SignedHead
from jitgate.errors import InvalidInput

SYSLOG = "syslog:"


def line(head: SignedHead, public_key: Ed25519PublicKey, at: datetime) -> str:
    """The witnessed form of ``head``: one JSON line (no newline) naming the key that signed it."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    record = {
        "seq": head.seq,
        "hash": head.hash,
        "signature": head.signature,
        "public_key": raw.hex(),
        "at": iso_utc(at),
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def file_path(spec: str) -> Path | None:
    """The file a witness spec names, or None for a webhook or syslog witness."""
    if spec.startswith(("http://", "https://", SYSLOG)):
        return None
    return Path(spec.removeprefix("file:"))


def check_spec(spec: str, data_dir: Path) -> None:
    """Refuse a witness spec that is not usable (``InvalidInput``), naming it."""
    path = file_path(spec)
    if path is None:
        return
    if not path.is_absolute():
        raise InvalidInput(f"audit witness file {spec!r} must be an absolute path")
    inside = path.resolve()
    if inside == data_dir.resolve() or data_dir.resolve() in inside.parents:
        raise InvalidInput(
            f"audit witness file {path} is inside the data directory {data_dir}; "
            "a witness is only worth something out of reach of whoever can reach the broker's data"
        )


@dataclass
class Witnessed:
    """The heads one witness file holds: ``heads`` by number, and the first unusable line if any."""

    path: Path
    heads: dict[int, str] = field(default_factory=dict)
    newest: int = -1
    problem: str = ""


def load(path: Path, public_key: Ed25519PublicKey) -> Witnessed:
    """Read a witness file; a missing file or a line that is not a head signed by the key is the problem."""
    found = Witnessed(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        found.problem = f"cannot read witness file {path}: {exc.strerror}"
        return found
    with handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
                head = SignedHead(int(data["seq"]), str(data["hash"]), str(data["signature"]))
            except (ValueError, KeyError, TypeError):
                found.problem = f"witness file {path} line {number} is not a witnessed head"
                return found
            known = found.heads.get(head.seq)
            if known == head.hash:
                continue  # sent again (several broker processes, or a periodic resend)
            if not head.signed_by(public_key):
                found.problem = f"witness file {path} line {number} is not signed by this audit key"
                return found
            if known is not None:
                found.problem = f"witness file {path} holds two signed hashes for record {head.seq} (forked)"
                return found
            found.heads[head.seq] = head.hash
            found.newest = max(found.newest, head.seq)
    return found


def check(conn: Connection, witnessed: Witnessed, head: SignedHead) -> CheckpointResult:
    """The verified chain ending at ``head`` must hold every head in ``witnessed``."""
    if witnessed.problem:
        verdict = "forked" if "(forked)" in witnessed.problem else "broken"
        return CheckpointResult(False, witnessed.problem, verdict)
    if witnessed.newest < 0:
        return CheckpointResult(True, f"witness {witnessed.path} holds no head yet")
    where = f"witnessed in {witnessed.path}"
    lookup = checkpoint.hash_at(conn)
    newest = SignedHead(witnessed.newest, witnessed.heads[witnessed.newest], "")
    result = checkpoint.compare(newest, head, lookup, seen=where)
    if not result.ok:
        return result
    for seq, digest in sorted(witnessed.heads.items()):
        result = checkpoint.compare(SignedHead(seq, digest, ""), head, lookup, seen=where)
        if not result.ok:
            return result
    return CheckpointResult(True, f"{len(witnessed.heads)} heads {where} match")
