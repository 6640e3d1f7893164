"""Request-scoped dependencies: the runtime and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from jitgate.auth.base import authenticate
from jitgate.domain.identity import Identity
from jitgate.runtime import Runtime
from jitgate.workflow.context import WorkflowContext


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def context(request: Request) -> WorkflowContext:
    return runtime(request).ctx


def caller(
    request: Request, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> Identity:
    return authenticate(runtime(request).authenticators, authorization)


Caller = Annotated[Identity, Depends(caller)]
Ctx = Annotated[WorkflowContext, Depends(context)]
RuntimeDep = Annotated[Runtime, Depends(runtime)]
