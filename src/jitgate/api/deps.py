"""Request-scoped dependencies: the runtime and the authenticated caller.

They are ``async`` on purpose: FastAPI runs a plain ``def`` dependency in the thread pool, and a
hop to a thread and back costs more than everything these do. Authentication that may block (a
token not seen in the last seconds, an OIDC key set to fetch) still goes to the thread pool.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from jitgate.auth.base import authenticate
from jitgate.auth.tokens import TokenAuthenticator
from jitgate.domain.identity import Identity
from jitgate.errors import Unauthenticated
from jitgate.runtime import Runtime
from jitgate.workflow.auth_failures import audit_throttled
from jitgate.workflow.context import WorkflowContext

B = TypeVar("B", bound=BaseModel)


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def runtime_dep(request: Request) -> Runtime:
    return runtime(request)


async def context(request: Request) -> WorkflowContext:
    return runtime(request).ctx


async def caller(
    request: Request, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> Identity:
    rt = runtime(request)
    source = peer(request)
    rt.auth_throttle.check(source)
    authenticators = rt.authenticators
    scheme, _, bearer = (authorization or "").partition(" ")
    if scheme.lower() == "bearer":
        for authenticator in authenticators:
            if isinstance(authenticator, TokenAuthenticator) and authenticator.recognises(bearer.strip()):
                found = authenticator.cached(bearer.strip())
                if found is not None:
                    return found
    try:
        return await run_in_threadpool(authenticate, authenticators, authorization)
    except Unauthenticated:
        if authorization:  # a request without any credential is not a failed attempt
            started = rt.auth_throttle.failed(source)
            if started is not None:
                await run_in_threadpool(audit_throttled, rt.ctx, rt.auth_throttle, started, "api")
        raise


def peer(request: Request) -> str:
    """The address the connection comes from (proxy headers are not believed; see api/serving.py)."""
    return request.client.host if request.client else ""


async def json_body(request: Request, model: type[B]) -> B:
    """The request's JSON body as ``model``, for routes that parse their own body.

    Refusals are the same ``RequestValidationError`` that FastAPI raises for a declared body, so
    they get the same answer (and, on issuing routes, the same audit record).
    """
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind != "application/json" and not kind.endswith("+json"):
        raise RequestValidationError(
            [{"type": "content_type", "loc": ("body",), "msg": "the body must be JSON (application/json)"}]
        )
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_context=False)]
        ) from None


Caller = Annotated[Identity, Depends(caller)]
Ctx = Annotated[WorkflowContext, Depends(context)]
RuntimeDep = Annotated[Runtime, Depends(runtime_dep)]
