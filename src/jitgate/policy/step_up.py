"""Step-up at elevation: whether a caller's sign-in is fresh and strong enough for a role's step.

A role's ``requires`` (``policy/model.py: SignInRequirement``) names how recently (``fresh_login``)
and how strongly (``acr``) the caller must have signed in at the identity provider to request or
to approve it. What the provider said about the sign-in travels with the identity (``auth_time``,
``acr``, ``amr``). An API token proves no sign-in at all, so it never satisfies a requirement.

The check is pure: the caller passes ``now``. It returns the ``StepUpRequired`` to raise (what to
ask the provider for: ``max_age`` and ``acr_values``), or None when the sign-in will do.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from jitgate.domain.durations import format_duration
from jitgate.domain.identity import Identity
from jitgate.errors import StepUpRequired
from jitgate.policy.model import Role

Step = Literal["request", "approve"]


def step_up_needed(identity: Identity, role: Role, step: Step, now: datetime) -> StepUpRequired | None:
    """What ``identity`` lacks to take ``step`` on ``role`` at ``now``, or None if nothing."""
    need = role.requires
    if need is None or step not in need.steps:
        return None
    max_age = need.max_age_seconds
    wants = _wanted(need.fresh_login is not None, max_age, need.acr)
    verb = "requesting" if step == "request" else "approving"
    if identity.auth_time is None:
        return StepUpRequired(
            f"{verb} {role.name} needs {wants} at the identity provider, which an API token cannot "
            "prove; sign in with SSO",
            max_age=max_age,
            acr_values=need.acr,
        )
    if max_age is not None and (now - identity.auth_time).total_seconds() > max_age:
        return StepUpRequired(
            f"{verb} {role.name} needs {wants}; your sign-in is older, sign in again",
            max_age=max_age,
            acr_values=need.acr,
        )
    if need.acr and identity.acr not in need.acr:
        return StepUpRequired(
            f"{verb} {role.name} needs {wants}; your sign-in was {identity.acr or 'of no stated strength'}, "
            "sign in again",
            max_age=max_age,
            acr_values=need.acr,
        )
    return None


def _wanted(fresh: bool, max_age: int | None, acr: tuple[str, ...]) -> str:
    parts = []
    if fresh and max_age is not None:
        parts.append(f"a sign-in within {format_duration(timedelta(seconds=max_age))}")
    if acr:
        parts.append(f"{'of' if parts else 'a sign-in of'} strength {' or '.join(acr)}")
    return " ".join(parts)


def sign_in_details(identity: Identity) -> dict[str, Any]:
    """How the actor signed in, for the audit record of a request or review; empty for API tokens.

    A workload's record names the rule its token matched, the issuer and the token's ``sub`` and
    ``jti`` (which the platform's own logs name too), never the token."""
    details: dict[str, Any] = {}
    if identity.workload is not None:
        proof = identity.workload
        details["workload"] = {
            "rule": proof.rule,
            "issuer": proof.issuer,
            "sub": proof.subject,
            "jti": proof.token_id,
        }
    if identity.auth_time is None and identity.acr is None and not identity.amr:
        return details
    details["sign_in"] = {
        "auth_time": identity.auth_time.isoformat() if identity.auth_time else None,
        "acr": identity.acr,
        "amr": list(identity.amr),
    }
    return details
