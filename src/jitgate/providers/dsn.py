"""What the database providers share: the admin DSN, secret-free error text, ephemeral login names.

The policy names only the variable (``admin_dsn_env``); its value is read at the moment of use so
that a rotated DSN takes effect without a restart. Drivers can echo connection strings in their
errors, so whatever a driver says goes through ``scrub`` before it reaches a ``ProviderError``.
Login names have one strict shape, so a revocation can never be pointed at a login jitgate did not
create.
"""

from __future__ import annotations

import re
import secrets as random
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

from jitgate.errors import ProviderError
from jitgate.policy.model import Target

MAX_REASON = 300
REDACTED = "***"
LOGIN = re.compile(r"^jit_[a-z0-9]{1,16}_[0-9a-f]{12}$")

_URL_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(password|passwd|pwd)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def admin_dsn(environ: Mapping[str, str], target: Target) -> str:
    """Return the admin DSN of ``target``; the error names the variable, never its value."""
    variable = target.admin_dsn_env
    if not variable:
        raise ProviderError(f"{target.kind} target {target.name} has no admin_dsn_env")
    value = environ.get(variable)
    if value is None:
        raise ProviderError(f"{target.kind} target {target.name}: environment variable {variable} is not set")
    if not value.strip():
        raise ProviderError(f"{target.kind} target {target.name}: environment variable {variable} is empty")
    return value.strip()


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Reduce driver text to one line with every given secret and anything password-shaped masked."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    forms = {
        form for secret in secrets if secret for form in (secret, quote(secret, safe=""), quote_plus(secret))
    }
    for form in sorted(forms, key=len, reverse=True):
        line = line.replace(form, REDACTED)
    line = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", line)
    line = _KEYWORD_PASSWORD.sub(rf"\1={REDACTED}", line)
    if len(line) > MAX_REASON:
        line = line[: MAX_REASON - 3] + "..."
    return line or "no detail"


def new_login(user: str) -> str:
    """A fresh login name ``jit_<user slug>_<48 random bits>``: lowercase, at most 33 bytes, no quoting."""
    slug = re.sub(r"[^a-z0-9]", "", user.lower())[:16] or "user"
    return f"jit_{slug}_{random.token_hex(6)}"


def checked_login(handle: str) -> str:
    """Return ``handle`` if it has the shape of a login jitgate creates; refuse anything else."""
    if not LOGIN.fullmatch(handle):
        raise ProviderError(f"refusing {handle!r}: not a login name jitgate creates")
    return handle
