"""Fixtures for the real-sshd tests: a throwaway OpenSSH sshd from ``tests/integration/sshd.py``."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ has no packages; make the shared helper importable as ``sshd`` from here.
_HELPERS = str(Path(__file__).resolve().parents[1])
if _HELPERS not in sys.path:
    sys.path.insert(0, _HELPERS)

from sshd import sshd, sshd_factory, sshd_logins  # noqa: E402

__all__ = ["sshd", "sshd_factory", "sshd_logins"]
