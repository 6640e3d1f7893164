"""The one place where errors become HTTP: status code per error class, RFC 9457 problem+json.

Bodies refused before any route ran (unknown fields, bad JSON, too large) are passed to
``on_refused_body`` too, so that routes handing out credentials can audit them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jitgate import errors

STATUS: dict[type[errors.JitgateError], int] = {
    errors.InvalidInput: 400,
    errors.InvalidText: 422,
    errors.PolicyFileError: 400,
    errors.Unauthenticated: 401,
    errors.StepUpRequired: 401,
    errors.IdentityProviderUnavailable: 502,
    errors.TooManyFailures: 429,
    errors.PolicyDenied: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidTransition: 409,
    errors.ProviderError: 502,
    errors.StorageUnavailable: 503,
    errors.InternalError: 500,
}


def status_of(exc: errors.JitgateError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def title_of(status: int) -> str:
    """RFC 9457 ``title`` for ``type: about:blank``: the status code's phrase."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem(
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> JSONResponse:
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    body = {
        "type": "about:blank",
        "title": title_of(status),
        "status": status,
        "code": code,
        "detail": detail,
    }
    return JSONResponse(
        {**body, **(extra or {})},
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def step_up_problem(exc: errors.StepUpRequired) -> JSONResponse:
    """RFC 9470: what sign-in the caller must bring, in ``WWW-Authenticate`` and in the body."""
    description = exc.message.replace("\\", "").replace('"', "'")
    challenge = f'Bearer error="insufficient_user_authentication", error_description="{description}"'
    if exc.max_age is not None:
        challenge += f", max_age={exc.max_age}"
    if exc.acr_values:
        challenge += f', acr_values="{" ".join(exc.acr_values)}"'
    extra: dict[str, object] = {"max_age": exc.max_age, "acr_values": list(exc.acr_values)}
    return problem(401, exc.code, exc.message, {"WWW-Authenticate": challenge}, extra)


RefusedBodyHook = Callable[[Request, str, str], Awaitable[None]]


class BodyTooLarge(StarletteHTTPException):
    """Raised while a request body is read, once it passes the limit (declared or streamed)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {limit} bytes")


def _guarded(request: Request, response: JSONResponse) -> JSONResponse:
    """An error answered under ``/ui`` (an unknown page, a form missing a field) carries the
    console's headers like its pages do: no framing, no sniffing, no caching."""
    if request.url.path.startswith("/ui"):
        from jitgate.web.pages import HEADERS

        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
    return response


def install(app: FastAPI, on_refused_body: RefusedBodyHook | None = None) -> None:
    @app.exception_handler(errors.JitgateError)
    async def _jitgate(request: Request, exc: errors.JitgateError) -> JSONResponse:
        wait = {"Retry-After": str(exc.retry_after)} if isinstance(exc, errors.TooManyFailures) else None
        if isinstance(exc, errors.StepUpRequired):
            return _guarded(request, step_up_problem(exc))
        return _guarded(request, problem(status_of(exc), exc.code, exc.message, wait))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        detail = f"{where}: {message}" if where else message
        if on_refused_body is not None:
            await on_refused_body(request, "invalid_request", detail)
        return _guarded(request, problem(422, "invalid_request", detail))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, BodyTooLarge):
            if on_refused_body is not None:
                await on_refused_body(request, "too_large", str(exc.detail))
            return _guarded(request, problem(413, "too_large", str(exc.detail)))
        return _guarded(request, problem(exc.status_code, "http_error", str(exc.detail)))
