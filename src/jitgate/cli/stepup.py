"""A broker's "sign in again, more strongly" answer, turned into the command that does it.

A role may demand a fresh or strong sign-in at the identity provider. The broker then answers 401
with problem+json code ``step_up_required`` (``max_age``, ``acr_values``) and RFC 9470's
``WWW-Authenticate: Bearer error="insufficient_user_authentication", max_age=..., acr_values="..."``.
The CLI does not start an interactive sign-in by itself; it prints the exact command to run.
Standard library only: ``jitgate ssh`` loads this on its fast path.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from jitgate import errors

_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
_ACR = re.compile(r"^[\x21-\x7e]{1,255}$")


def login_command(max_age: int | None, acr_values: tuple[str, ...]) -> str:
    """``jitgate login --oidc`` with the options that meet the demand, quoted for a shell."""
    words = ["jitgate", "login", "--oidc"]
    if max_age is not None:
        words += ["--max-age", str(max_age)]
    if acr_values:
        words += ["--acr", " ".join(acr_values)]
    return shlex.join(words)


def step_up_error(
    max_age: int | None, acr_values: tuple[str, ...], detail: str = ""
) -> errors.StepUpRequired:
    why = detail.strip().rstrip(".") or "this needs a fresher or stronger sign-in"
    return errors.StepUpRequired(
        f"{why}; run {login_command(max_age, acr_values)}", max_age=max_age, acr_values=acr_values
    )


def from_answer(www_authenticate: str | None, body: Any) -> errors.StepUpRequired | None:
    """The step-up a 401 asks for, from its problem+json body and its header (the body's values
    first); None if it asks for none."""
    problem = body if isinstance(body, dict) else {}
    params = bearer_params(www_authenticate or "")
    by_body = problem.get("code") == "step_up_required"
    if not by_body and params.get("error") != "insufficient_user_authentication":
        return None
    detail = problem["detail"] if isinstance(problem.get("detail"), str) else ""
    max_age = _max_age(problem.get("max_age"))
    if max_age is None:
        max_age = _max_age(params.get("max_age"))
    acr_values = _acr_values(problem.get("acr_values")) or _acr_values(params.get("acr_values"))
    return step_up_error(max_age, acr_values, detail)


def bearer_params(header: str) -> dict[str, str]:
    """The auth-params of a ``Bearer`` challenge (RFC 6750 §3): quoted or bare values."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return {}
    found: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        found.setdefault(match.group(1).lower(), value)
    return found


def _max_age(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and 0 <= value <= 10**9 else None


def _acr_values(value: object) -> tuple[str, ...]:
    words = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
    # Printed as a command to run: only plain visible words, never control characters.
    return tuple(w for w in words if isinstance(w, str) and _ACR.match(w))[:10]
