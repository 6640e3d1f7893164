"""Fixtures for the SSH gateway tests: a broker with its gateway, two certified sshds, people with keys."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ has no packages; make the shared helpers importable from here.
_HELPERS = str(Path(__file__).resolve().parents[1])
if _HELPERS not in sys.path:
    sys.path.insert(0, _HELPERS)

from gatewayworld import gateway_world, sshd_logins  # noqa: E402

__all__ = ["gateway_world", "sshd_logins"]
