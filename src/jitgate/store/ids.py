"""Identifiers for requests and grants: a kind prefix and 48 random bits, short enough to type."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"
