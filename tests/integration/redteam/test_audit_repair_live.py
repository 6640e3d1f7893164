"""Attacks on the audit log's repair, through the real CLI on a real data directory.

A database administrator rolls the log back (deletes the newest records and puts back a head they
saved). The broker notices, from its checkpoint. The operator then runs ``jitgate audit repair``,
which may refuse (the records have to be put back) or re-seal the log where it now ends and move
the checkpoint back to it, after which ``audit verify`` says intact. Either way what was cut must
stay provable: the checkpoint keeps the abandoned signed head, or the repair's record holds it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

JITGATE = [sys.executable, "-m", "jitgate"]


def jitgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JITGATE, *args], capture_output=True, text=True, timeout=60, check=False)


def add_user(data: Path, name: str) -> None:
    done = jitgate("users", "add", name, "--data-dir", str(data), "--json")
    assert done.returncode == 0, done.stderr


def test_a_repair_never_launders_a_rollback(tmp_path: Path) -> None:
    database = tmp_path / "jitgate.db"
    add_user(tmp_path, "alice")
    with sqlite3.connect(database) as db:
        saved = db.execute("SELECT seq, hash, signature FROM audit_head").fetchone()
    add_user(tmp_path, "mallory")  # the record the database administrator wants gone
    checkpoint = json.loads((tmp_path / "keys" / "audit-checkpoint.json").read_text())
    assert checkpoint["seq"] == saved[0] + 1

    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM audit_events WHERE seq > ?", (saved[0],))
        db.execute("UPDATE audit_head SET seq = ?, hash = ?, signature = ?", saved)
    verdict = jitgate("audit", "verify", "--data-dir", str(tmp_path))
    assert verdict.returncode == 10
    assert "rolled back" in verdict.stderr

    done = jitgate("audit", "repair", "--data-dir", str(tmp_path), "--reason", "INC-9 restored by DBA")
    if done.returncode != 0:
        assert done.returncode == 10
        assert json.loads((tmp_path / "keys" / "audit-checkpoint.json").read_text()) == checkpoint
        return
    exported = jitgate("audit", "export", "--data-dir", str(tmp_path))
    repaired = [json.loads(line) for line in exported.stdout.splitlines()][-1]
    assert repaired["action"] == "audit.repaired"
    kept = json.dumps(repaired["details"])
    assert checkpoint["hash"] in kept
    assert checkpoint["signature"] in kept
