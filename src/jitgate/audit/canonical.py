"""The byte-exact form of an audit record, its hash, the signed head's message and the secret filter.

Pure functions, no I/O: the chain writer and the verifier both build on them, and an auditor can
re-implement them from this file alone. A record's body is canonical JSON (sorted keys, no spaces,
UTF-8 as is, datetimes as fixed-width ``YYYY-MM-DDTHH:MM:SS.ffffffZ``) of
``{seq, at, actor, action, request_id, grant_id, role, target, details, prev}``, and

    hash = sha256(b"jitgate-audit-v1\\0" + prev_hash + b"\\0" + body)
    head signature = Ed25519(b"jitgate-audit-head-v1\\0" + seq + b"\\0" + hash)

with distinct domain prefixes so that a record hash can never be passed off as a head (or the
reverse). The first record's ``prev`` is ``GENESIS_HASH``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
RECORD_PREFIX = b"jitgate-audit-v1\x00"
HEAD_PREFIX = b"jitgate-audit-head-v1\x00"

BODY_FIELDS = ("seq", "at", "actor", "action", "request_id", "grant_id", "role", "target", "details", "prev")

_HEX64 = re.compile(r"[0-9a-f]{64}")
_PLAIN = frozenset({str, bool, type(None)})


def iso_utc(value: datetime) -> str:
    """``value`` as fixed-width ISO 8601 UTC with a ``Z``; naive datetimes are refused."""
    if value.tzinfo is None:
        raise ValueError("naive datetime in an audit record; use the injected clock")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: object) -> str:
    """The one JSON text for ``value``: sorted keys, no whitespace, non-ASCII kept, no NaN."""
    return json.dumps(
        normalize(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def normalize(value: object, where: str = "value") -> Any:
    """Turn ``value`` into plain JSON types, refusing anything that has no single JSON form."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)  # an IntEnum becomes its number
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} has no JSON form")
        return value
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not a string")
            # Most values are plain strings: skip the recursion (and building its path) for them.
            out[key] = item if type(item) in _PLAIN else normalize(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [
            item if type(item) in _PLAIN else normalize(item, f"{where}[{i}]") for i, item in enumerate(value)
        ]
    raise ValueError(f"{where}: {type(value).__name__} is not allowed in an audit record")


def event_body(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    request_id: str | None,
    grant_id: str | None,
    role: str | None,
    target: str | None,
    details: Mapping[str, object],
    prev: str,
) -> str:
    """The canonical body of one record."""
    return canonical_json(
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "action": action,
            "request_id": request_id,
            "grant_id": grant_id,
            "role": role,
            "target": target,
            "details": details,
            "prev": prev,
        }
    )


def record_hash(prev_hash: str, body: str) -> str:
    """The hash that links a record (its canonical ``body``) to the one before it."""
    return hashlib.sha256(RECORD_PREFIX + prev_hash.encode() + b"\x00" + body.encode()).hexdigest()


def head_message(seq: int, head_hash: str) -> bytes:
    """What the audit key signs: the newest record's number and hash."""
    if seq < 0 or not _HEX64.fullmatch(head_hash):
        raise ValueError("an audit head is a non-negative seq and a 64-digit lowercase hex hash")
    return HEAD_PREFIX + str(seq).encode() + b"\x00" + head_hash.encode()


# Secret filter. Defense in depth: callers are meant never to pass secrets; this refuses the
# obvious shapes (by key name, and by values that are plainly key material or bearer tokens).
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "tokens",
        "apikey",
        "privkey",
        "privatekey",
        "pem",
        "dsn",
        "cookie",
        "authorization",
        "cert",
        "certificate",
    }
)
_SECRET_PAIRS = frozenset(
    {("private", "key"), ("api", "key"), ("secret", "key"), ("session", "key"), ("signing", "key")}
)
# A name ending in one of these refers to a secret without being one: ``token_id``, ``cert_serial``.
_REFERENCE_SUFFIXES = frozenset({"id", "ids", "fingerprint", "fingerprints", "serial", "serials", "count"})
# Every pattern below contains one of these literally; a value with none of them needs no regex.
_SECRET_MARKERS = ("-----BEGIN", "-cert-v01@openssh.com", "://", "eyJ", "jg_", "jgs_")
_SECRET_VALUES = (
    (re.compile(r"-----BEGIN [A-Z0-9 ]+-----"), "PEM key or certificate"),
    (re.compile(r"-cert-v01@openssh\.com\s+AAAA"), "OpenSSH certificate"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"), "URL with a password"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\."), "JSON web token"),
    # jitgate's own API token (auth/tokens.py): ``jg_`` and 43 URL-safe base64 characters. Not
    # anchored: a token glued to other text ("tokenjg_…", "jg_…xyz") is still the token.
    (re.compile(r"jg_[A-Za-z0-9_-]{43}"), "jitgate API token"),
    # A web session id (auth/sessions.py) signs a browser in as surely as a token does.
    (re.compile(r"jgs_[A-Za-z0-9_-]{43}"), "jitgate web session id"),
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=4096)
def secret_looking_key(key: str) -> bool:
    """Whether a details key names a secret (``password``, ``client_secret``, ``privateKey``…)."""
    parts = [p for p in _WORD_SPLIT.split(_CAMEL.sub("_", key).lower()) if p]
    if not parts or parts[-1] in _REFERENCE_SUFFIXES:
        return False
    if any(part in _SECRET_WORDS for part in parts):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(parts))


def check_no_secrets(details: Mapping[str, object], where: str = "details") -> None:
    """Raise ``ValueError`` naming the field (never its value) if ``details`` looks like it holds a secret."""
    for key, value in details.items():
        path = f"{where}.{key}"
        if secret_looking_key(str(key)):
            raise ValueError(f"{path}: secrets never enter the audit log (key looks like a secret)")
        _check_value(value, path)


def secret_shape(value: str) -> str | None:
    """What kind of secret ``value`` looks like (``"jitgate API token"``…), or ``None``."""
    if not any(marker in value for marker in _SECRET_MARKERS):
        return None
    for pattern, what in _SECRET_VALUES:
        if pattern.search(value):
            return what
    return None


def encodable(value: str) -> bool:
    """Whether ``value`` has a UTF-8 form (no lone surrogates), as every hashed body must."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: str, path: str) -> None:
    """Raise ``ValueError`` naming ``path`` (never the value) if ``value`` cannot be recorded as is."""
    what = secret_shape(value)
    if what is not None:
        raise ValueError(f"{path}: secrets never enter the audit log (value looks like a {what})")
    if not encodable(value):
        raise ValueError(f"{path}: text that is not valid Unicode cannot be recorded")


def _check_value(value: object, path: str) -> None:
    if isinstance(value, str):
        check_text(value, path)
    elif isinstance(value, Mapping):
        check_no_secrets(value, path)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_value(item, f"{path}[{i}]")
