"""``jitgate audit repair``: re-seals a log whose head was damaged and says so in the log itself;
refuses, with exit 10 and one line, to cover up a record that was edited; and asks for a reason."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

JITGATE = [sys.executable, "-m", "jitgate"]


def jitgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JITGATE, *args], capture_output=True, text=True, timeout=60, check=False)


def broker_with_records(data: Path) -> Path:
    for name in ("alice", "bob"):
        done = jitgate("users", "add", name, "--data-dir", str(data), "--json")
        assert done.returncode == 0, done.stderr
    return data / "jitgate.db"


def test_a_damaged_head_is_resealed_and_the_damage_recorded(tmp_path: Path) -> None:
    database = broker_with_records(tmp_path)
    with sqlite3.connect(database) as db:
        db.execute("UPDATE audit_head SET seq = 1")  # the tail cut off, as far as the head says
    assert jitgate("audit", "verify", "--data-dir", str(tmp_path)).returncode == 10

    missing = jitgate("audit", "repair", "--data-dir", str(tmp_path))
    assert missing.returncode == 2  # --reason is required

    done = jitgate("audit", "repair", "--data-dir", str(tmp_path), "--reason", "CHG-1 head edited in test")
    assert done.returncode == 0, done.stderr
    assert "audit log repaired" in done.stdout
    assert jitgate("audit", "verify", "--data-dir", str(tmp_path)).returncode == 0
    exported = jitgate("audit", "export", "--data-dir", str(tmp_path))
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["action"] for r in records] == ["user.added", "user.added", "audit.repaired"]
    details = records[-1]["details"]
    assert details["old_head"]["seq"] == 1
    assert details["resealed_at_record"] == 2
    assert details["reason"] == "CHG-1 head edited in test"


def test_an_edited_record_is_never_papered_over(tmp_path: Path) -> None:
    database = broker_with_records(tmp_path)
    with sqlite3.connect(database) as db:
        db.execute("UPDATE audit_events SET body = replace(body, 'alice', 'alicf') WHERE seq = 1")
        before = db.execute("SELECT seq, hash, signature FROM audit_head").fetchone()
    done = jitgate("audit", "repair", "--data-dir", str(tmp_path), "--reason", "CHG-2")
    assert done.returncode == 10
    assert done.stderr.strip().count("\n") == 0
    assert "record 1: hash does not match its contents" in done.stderr
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT seq, hash, signature FROM audit_head").fetchone() == before
        assert db.execute("SELECT count(*) FROM audit_events").fetchone() == (2,)


def test_a_rollback_is_recorded_by_the_repair_and_never_passes_as_intact(tmp_path: Path) -> None:
    database = broker_with_records(tmp_path)
    with sqlite3.connect(database) as db:
        saved = db.execute("SELECT seq, hash, signature FROM audit_head").fetchone()
    assert jitgate("users", "add", "carol", "--data-dir", str(tmp_path)).returncode == 0
    with sqlite3.connect(database) as db:  # a database administrator cuts the last record off
        db.execute("DELETE FROM audit_events WHERE seq > ?", (saved[0],))
        db.execute("UPDATE audit_head SET seq = ?, hash = ?, signature = ?", saved)
    rolled = jitgate("audit", "verify", "--data-dir", str(tmp_path))
    assert rolled.returncode == 10
    assert "rolled back" in rolled.stderr

    done = jitgate("audit", "repair", "--data-dir", str(tmp_path), "--reason", "INC-9 rows deleted")
    assert done.returncode == 0, done.stderr
    assert jitgate("audit", "verify", "--data-dir", str(tmp_path)).returncode == 0
    assert jitgate("users", "add", "dave", "--data-dir", str(tmp_path)).returncode == 0
    exported = jitgate("audit", "export", "--data-dir", str(tmp_path))
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["action"] for r in records] == ["user.added"] * 2 + ["audit.repaired", "user.added"]
    repaired = records[2]["details"]
    assert repaired["verdict"] == "rolled_back"  # the cut is on record, in the chain itself
    assert "rolled back" in repaired["problem"]
