"""The audit checkpoint outside the database only ever moves forward and is written privately."""

from __future__ import annotations

import stat
from pathlib import Path

from jitgate.audit import checkpoint
from jitgate.audit.chain import SignedHead


def chain(**hashes: str) -> checkpoint.HashAt:
    """A stored chain as far as the checkpoint looks at it: record number to hash."""
    return lambda seq: hashes.get(f"r{seq}")


def test_the_checkpoint_never_moves_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-checkpoint.json"
    writer = checkpoint.Writer(path, interval=0)
    assert writer.update(SignedHead(5, "a" * 64, "00"), chain()).ok
    assert writer.update(SignedHead(9, "b" * 64, "01"), chain(r5="a" * 64)).ok
    behind = writer.update(SignedHead(7, "c" * 64, "02"), chain(r5="a" * 64))
    assert (behind.ok, behind.verdict) == (False, "rolled_back")
    assert "head 9 checkpointed, database at 7" in behind.problem
    assert checkpoint.read(path) == SignedHead(9, "b" * 64, "01")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_checkpoint_moves_only_to_a_chain_that_holds_the_checkpointed_record(tmp_path: Path) -> None:
    """Rolled back to 5 and regrown to 12: record 9 is there again, but not the one checkpointed."""
    path = tmp_path / "audit-checkpoint.json"
    writer = checkpoint.Writer(path, interval=0)
    assert writer.update(SignedHead(9, "b" * 64, "01"), chain()).ok
    regrown = writer.update(SignedHead(12, "d" * 64, "03"), chain(r9="e" * 64))
    assert (regrown.ok, regrown.verdict) == (False, "forked")
    assert "record 9 differs" in regrown.problem
    assert checkpoint.read(path) == SignedHead(9, "b" * 64, "01")
    assert writer.update(SignedHead(12, "d" * 64, "03"), chain(r9="b" * 64)).ok
    assert checkpoint.read(path) == SignedHead(12, "d" * 64, "03")


def test_a_damaged_checkpoint_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{not json")
    refused = checkpoint.Writer(path, interval=0).update(SignedHead(3, "a" * 64, "00"), chain())
    assert (refused.ok, refused.verdict) == (False, "broken")
    assert path.read_text() == "{not json"


def test_it_is_written_at_most_once_per_interval(tmp_path: Path) -> None:
    writer = checkpoint.Writer(tmp_path / "c.json", interval=3600)
    assert writer.due()
    writer.update(SignedHead(1, "a" * 64, "00"), chain())
    assert not writer.due()


def test_a_damaged_checkpoint_reads_as_invalid(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{not json")
    assert checkpoint.read(path) == checkpoint.DAMAGED
    assert checkpoint.read(tmp_path / "missing.json") is None
