"""What each kind of refusal means as an exit code. Standard library only (see ``config.py``)."""

from __future__ import annotations

from jitgate import errors

EXIT_CODES: dict[type[errors.JitgateError], int] = {
    errors.InvalidInput: 3,
    errors.PolicyFileError: 3,
    errors.Unauthenticated: 4,
    errors.StepUpRequired: 4,
    errors.PolicyDenied: 5,
    errors.NotFound: 6,
    errors.Conflict: 7,
    errors.InvalidTransition: 7,
    errors.ProviderError: 8,
    errors.StorageUnavailable: 9,
    errors.AuditIntegrityError: 10,
}
"""Exit codes: 0 done, 1 unexpected, 2 usage, 3 bad input, 4 not authenticated (or a fresher or
stronger sign-in needed), 5 refused by policy, 6 not found, 7 conflicts with the current state,
8 target failed, 9 broker or database unavailable, 10 audit log broken, 11 gave up waiting."""
WAIT_TIMED_OUT = 11
"""``request --wait`` gave up at ``--wait-timeout``; what it waited for may still happen."""


def exit_code(exc: errors.JitgateError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1
