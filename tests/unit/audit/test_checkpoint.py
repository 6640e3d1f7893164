"""The audit checkpoint outside the database only ever moves forward and is written privately."""

from __future__ import annotations

import stat
from pathlib import Path

from jitgate.audit import checkpoint
from jitgate.audit.chain import SignedHead


def test_the_checkpoint_never_moves_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-checkpoint.json"
    writer = checkpoint.Writer(path, interval=0)
    assert writer.update(SignedHead(5, "a" * 64, "00"))
    assert writer.update(SignedHead(9, "b" * 64, "01"))
    assert not writer.update(SignedHead(7, "c" * 64, "02"))
    assert checkpoint.read(path) == SignedHead(9, "b" * 64, "01")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_it_is_written_at_most_once_per_interval(tmp_path: Path) -> None:
    writer = checkpoint.Writer(tmp_path / "c.json", interval=3600)
    assert writer.due()
    writer.update(SignedHead(1, "a" * 64, "00"))
    assert not writer.due()


def test_a_damaged_checkpoint_reads_as_invalid(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{not json")
    assert checkpoint.read(path) == SignedHead(-1, "", "")
    assert checkpoint.read(tmp_path / "missing.json") is None
