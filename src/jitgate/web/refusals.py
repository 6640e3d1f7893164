"""The one place where a refused form (a ``JitgateError`` from a workflow service or the CSRF
check) becomes a response: the page the form is on, rendered again with what was typed and the
one-line reason, under the status the API would answer with.

Every POST handler of the access pages hands its refusal to ``refused``; a refusal that needs
something other than the form again (a fresh sign-in, say) is answered here, once, for all of them.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import Response

from jitgate.api.problems import status_of
from jitgate.auth.sessions import WebSession
from jitgate.errors import JitgateError, StepUpRequired, Unauthenticated
from jitgate.web.oidc_signin import step_up

Render = Callable[[str, int], Response]
"""Renders the form's page again with an error message, under a status code."""


def refused(
    exc: JitgateError, render: Render, request: Request, session: WebSession, return_to: str
) -> Response:
    """The response to a form the broker refused with ``exc``: for a role that demands a fresher or
    stronger sign-in, the way to the identity provider and back to ``return_to``; else the form."""
    if isinstance(exc, StepUpRequired):
        return step_up(request, session, exc, return_to)
    return render(exc.message, form_status(exc))


def form_status(exc: JitgateError) -> int:
    """The API's status for ``exc``, except that a form refused while signed in (stale, or from
    another site) is forbidden (403), not a missing sign-in (401)."""
    if isinstance(exc, Unauthenticated):
        return 403
    return status_of(exc)
