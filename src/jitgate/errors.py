"""One error tree for the whole broker.

Nothing here knows about HTTP or exit codes: ``api/`` and ``cli/`` each map these classes once.
Every message is one line meant for the person who caused it; no secret ever goes into one.
"""

from __future__ import annotations

import math


class JitgateError(Exception):
    """Base of every error jitgate raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(JitgateError):
    """The caller sent something malformed or out of range."""

    code = "invalid_input"


class InvalidText(InvalidInput):
    """Free text (a reason, a comment, a name) that could disguise itself to its readers."""

    code = "invalid_text"


class PolicyFileError(JitgateError):
    """A policy file that cannot be loaded; the message names file and line.

    ``problems`` holds every problem found, one line each; the message is the first of them.
    """

    code = "invalid_policy"

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class Unauthenticated(JitgateError):
    """No identity, or a credential that does not prove one."""

    code = "unauthenticated"


class TooManyFailures(Unauthenticated):
    """Too many failed authentications from the caller's address; refused before any credential is
    looked at, for ``retry_after`` whole seconds."""

    code = "too_many_failures"

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            f"too many failed authentications from your address; try again in {self.retry_after} s"
        )


class PolicyDenied(JitgateError):
    """The caller is known but policy does not allow what they asked."""

    code = "forbidden"


class StepUpRequired(JitgateError):
    """The role demands a fresher or stronger sign-in than the caller's (RFC 9470's
    ``insufficient_user_authentication``): sign in again at the identity provider with ``max_age``
    and ``acr_values``, then retry."""

    code = "step_up_required"

    def __init__(self, message: str, *, max_age: int | None, acr_values: tuple[str, ...]) -> None:
        super().__init__(message)
        self.max_age = max_age
        self.acr_values = acr_values


class IdentityProviderUnavailable(JitgateError):
    """The OpenID provider cannot be reached, or answers with something that is not OpenID."""

    code = "identity_provider_unavailable"


class NotFound(JitgateError):
    """The thing named does not exist (or the caller may not know it exists)."""

    code = "not_found"


class Conflict(JitgateError):
    """The request is well-formed but clashes with the current state."""

    code = "conflict"


class InvalidTransition(Conflict):
    """A lifecycle step that the current state does not allow."""

    code = "invalid_transition"


class TooManyPending(Conflict):
    """The requester already has as many requests waiting for review as the broker allows."""

    code = "too_many_pending"


class ProviderError(JitgateError):
    """A credential provider failed to talk to its target."""

    code = "provider_error"


class TargetUnreachable(ProviderError):
    """The provider could not reach the target at all — connection refused, timed out, DNS — as
    opposed to a failure of the revocation itself."""

    code = "target_unreachable"


class StorageUnavailable(JitgateError):
    """The broker's own database refused the work (locked, read-only, unreachable)."""

    code = "storage_unavailable"


class AuditIntegrityError(StorageUnavailable):
    """The audit log cannot be trusted to be extended: its head or chain was edited, deleted or
    rolled back, or it is signed by another key. Every such refusal of the audit layer is one of
    these, so that ending access can park its records instead of waiting for a repair."""

    code = "audit_broken"


class InternalError(JitgateError):
    """Something failed that should not have (a bug); the message says so and nothing more."""

    code = "internal_error"


class AuditRolledBack(AuditIntegrityError):
    """The audit log is older than a head the broker already saw: records were cut off (rolled back)."""

    code = "audit_rolled_back"


class ElevationRefused(ProviderError):
    """The target refuses an elevation for good: the account does not exist, a role is unsafe.

    Retrying cannot help, so the grant ends instead of waiting for the target to change its mind.
    """

    code = "elevation_refused"
