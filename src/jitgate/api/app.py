"""The FastAPI application: routes, problem+json errors, health, metrics, JWKS, body-size limit.

``create_app(runtime)`` builds the app around an assembled runtime; nothing happens at import.
The scheduler runs for as long as the app is served (the lifespan), in this process.

The body-size limit is a plain ASGI middleware, not ``@app.middleware("http")``: that one runs
every request through an extra task and memory streams (a fifth of the time of a small request),
and it could only check a declared ``Content-Length``, not a chunked body that never declares one.
"""

from __future__ import annotations

import base64
import gc
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jitgate import __version__
from jitgate.api import (
    docs_page,
    problems,
    routes_access,
    routes_accounts,
    routes_audit,
    routes_chat,
    routes_cli_oidc,
    routes_credentials,
    routes_keys,
    routes_sessions,
)
from jitgate.api.deps import RuntimeDep
from jitgate.domain.model import RequestState
from jitgate.runtime import Runtime
from jitgate.store import issuance
from jitgate.store.tables import grants, requests, revocations
from jitgate.web import routes as web_routes
from jitgate.workflow import audit_state
from jitgate.workflow.context import WorkflowContext

MAX_BODY = 64 * 1024


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes as they are read: 413 problem+json, no buffering.

    The error is raised from ``receive``, inside the route's body parsing, so the problem handlers
    answer it like any other error (and the issuing routes audit it).
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        too_large = declared is not None and (not declared.isdigit() or int(declared) > self.limit)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            if too_large:
                raise problems.BodyTooLarge(self.limit)
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise problems.BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


class FastPath:
    """Answers the hottest route without FastAPI's routing and dependency machinery.

    Every SSH connection asks for a certificate, and for that one small request FastAPI's
    exception, routing and dependency layers cost more than the route itself. This middleware
    sits inside ``BodyLimit`` and the server-error handler and calls the same endpoint function
    the app registers for the route (which documents it in OpenAPI). Errors go to the app's own
    exception handlers, so answers and audit records are the same either way.
    """

    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], Endpoint]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (
            self.routes.get((scope.get("method", ""), scope.get("path", "")))
            if scope["type"] == "http"
            else None
        )
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = _handler_for(scope["app"], exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)


Endpoint = Callable[[Request], Awaitable[Response]]


def _handler_for(app: FastAPI, exc: Exception) -> Callable[[Request, Any], Any] | None:
    return next((app.exception_handlers[c] for c in type(exc).__mro__ if c in app.exception_handlers), None)


class StateCollector(Collector):
    """Gauges read from the database at scrape time, so every replica reports the same truth."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Any:
        import sqlalchemy as sa

        db = self._runtime.ctx.db
        with db.read() as conn:
            active = conn.execute(
                sa.select(sa.func.count()).where(grants.c.state == RequestState.ACTIVE.value)
            ).scalar_one()
            pending = conn.execute(
                sa.select(sa.func.count()).where(requests.c.state == RequestState.PENDING.value)
            ).scalar_one()
            queued: dict[str, int] = dict(
                conn.execute(
                    sa.select(revocations.c.action, sa.func.count())
                    .where(revocations.c.state == "pending")
                    .group_by(revocations.c.action)
                ).all()
            )
            failing = conn.execute(
                sa.select(sa.func.count()).where(
                    revocations.c.state == "pending",
                    revocations.c.attempts > 0,
                    revocations.c.action.in_(issuance.TAKING_BACK),
                )
            ).scalar_one()
        revoking = sum(queued.get(action, 0) for action in issuance.TAKING_BACK)
        yield GaugeMetricFamily("jitgate_active_grants", "Grants in force now", value=active)
        yield GaugeMetricFamily("jitgate_pending_requests", "Requests waiting for review", value=pending)
        yield GaugeMetricFamily("jitgate_pending_revocations", "Revocations not yet done", value=revoking)
        yield GaugeMetricFamily(
            "jitgate_pending_elevations",
            "Elevations of existing accounts queued to be applied",
            value=queued.get(issuance.ELEVATE, 0),
        )
        yield GaugeMetricFamily(
            "jitgate_failing_revocations",
            "Revocations that failed at least once and are retried",
            value=failing,
        )
        audit = audit_state.status(self._runtime.ctx)
        yield GaugeMetricFamily(
            "jitgate_audit_healthy",
            "1 while the audit log can be extended and nothing is parked, else 0 (alert on it)",
            value=int(audit.healthy),
        )
        yield GaugeMetricFamily(
            "jitgate_audit_parked_records",
            "Audit records parked while the audit log is broken, not yet in the chain",
            value=audit.parked,
        )

        yield from audit_metrics(self._runtime.ctx)


class AuthFailureCollector(Collector):
    """Counters of this process's failed authentications and of attempts refused as throttled."""

    def __init__(self, runtime: Runtime) -> None:
        self._throttle = runtime.auth_throttle

    def collect(self) -> Any:
        yield CounterMetricFamily(
            "jitgate_auth_failures", "Failed authentications", value=self._throttle.failures
        )
        yield CounterMetricFamily(
            "jitgate_auth_throttled", "Attempts refused: too many failures", value=self._throttle.refused
        )


def audit_metrics(ctx: WorkflowContext) -> Iterator[Metric]:
    """Whether this process refuses the audit log, and what its witnesses received or missed."""
    yield GaugeMetricFamily(
        "jitgate_audit_chain_ok",
        "1 while this process appends to the audit log, 0 while it refuses it (tampered, rolled back)",
        value=0 if ctx.audit.problem else 1,
    )
    if ctx.audit_witness is None:
        return
    sent = CounterMetricFamily(
        "jitgate_audit_witness_sent", "Signed audit heads a witness received", labels=["witness"]
    )
    failed = CounterMetricFamily(
        "jitgate_audit_witness_failures",
        "Failed attempts to send a witness the audit head",
        labels=["witness"],
    )
    for status in ctx.audit_witness.status():
        sent.add_metric([status.name], status.sent)
        failed.add_metric([status.name], status.failures)
    yield sent
    yield failed


def settle_heap() -> None:
    """Call once the app is built, before serving: fewer, cheaper garbage collections.

    Everything alive at that point (modules, the app, the policy, the engine) lives as long as
    the process; frozen, it is never scanned again. Requests allocate many short-lived objects
    and few cycles, so the youngest generation is collected less often than Python's default.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


@asynccontextmanager
async def _serving(
    app: FastAPI, runtime: Runtime, *, run_scheduler: bool, close_runtime: bool
) -> AsyncIterator[None]:
    """What runs while the app is served: the SSH gateway if configured, and the scheduler."""
    gateway = None
    if runtime.settings.gateway_listen and run_scheduler:
        from jitgate.gateway.service import Gateway  # only a broker with a gateway loads asyncssh

        gateway = app.state.gateway = Gateway(runtime)
        await gateway.start()
    if run_scheduler:
        runtime.scheduler.start()
    try:
        yield
    finally:
        if gateway is not None:
            await gateway.stop()
        runtime.scheduler.stop()
        app.state.writer.shutdown(wait=True)
        if close_runtime:
            runtime.close()


def create_app(runtime: Runtime, *, run_scheduler: bool = True, close_runtime: bool = False) -> FastAPI:
    """The broker's app; ``close_runtime`` closes the runtime (database pool) when serving ends."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with _serving(app, runtime, run_scheduler=run_scheduler, close_runtime=close_runtime):
            yield

    app = FastAPI(
        title="jitgate",
        version=__version__,
        description="Just-in-time privileged access broker",
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry looks for a configured provider on every request; the
        # broker does not export traces or metrics through it (metrics are at /metrics).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # FastAPI's pages load their scripts from a CDN; /docs is the broker's own (docs_page).
        docs_url=None,
        redoc_url=None,
    )
    docs_page.install(app)
    app.state.runtime = runtime
    app.state.gateway = None
    app.state.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jitgate-writer")
    app.state.certificate_minter = routes_credentials.certificate_minter(
        runtime.ctx, app.state.writer if runtime.ctx.db.is_sqlite else None
    )
    problems.install(app, on_refused_body=routes_credentials.audit_refused_body)
    hot = {("POST", routes_credentials.SSH_CERTIFICATE_PATH): routes_credentials.ssh_certificate}
    app.add_middleware(FastPath, routes=hot)  # added first, so inside BodyLimit
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    registry = CollectorRegistry()
    registry.register(StateCollector(runtime))
    registry.register(AuthFailureCollector(runtime))

    @app.get("/healthz", tags=["meta"])
    def healthz(rt: RuntimeDep) -> dict[str, Any]:
        """``status`` is ``ok``, or ``degraded`` while the audit log is broken or records are parked.

        Degraded still answers 200: the broker goes on ending access then, and a load balancer
        that took every replica out of service would take the revoke endpoint away with them.
        """
        with rt.ctx.db.read() as conn:
            conn.exec_driver_sql("SELECT 1")
        audit = audit_state.status(rt.ctx)
        raw = rt.ctx.audit.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        body: dict[str, Any] = {
            "status": "ok" if audit.healthy and rt.ctx.audit.problem is None else "degraded",
            "version": __version__,
            "policy_sha256": rt.policy_digest,
            "audit_public_key": raw.hex(),
            "worker": os.getpid(),
            "scheduler": rt.scheduler.status(),
            "audit": "ok" if audit.problem is None else "broken",
            "audit_parked_records": audit.parked,
        }
        if app.state.gateway is not None:
            body["gateway"] = app.state.gateway.status()
        problem = audit.problem or rt.ctx.audit.problem
        if problem is not None:
            body["audit"] = "broken"
            body["audit_problem"] = problem
        return body

    @app.get("/metrics", tags=["meta"])
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/.well-known/jwks.json", tags=["meta"])
    def jwks(rt: RuntimeDep) -> dict[str, Any]:
        raw = rt.ctx.audit.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {
            "keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "use": "sig", "alg": "EdDSA", "kid": "audit"}]
        }

    app.add_api_route(
        routes_credentials.SSH_CERTIFICATE_PATH,
        routes_credentials.ssh_certificate,
        methods=["POST"],
        status_code=201,
        tags=["credentials"],
        openapi_extra=routes_credentials.SSH_CERTIFICATE_OPENAPI,
    )
    app.include_router(routes_access.router, tags=["access"])
    app.include_router(routes_credentials.router, tags=["credentials"])
    app.include_router(routes_audit.router, tags=["audit"])
    app.include_router(routes_accounts.router, tags=["accounts"])
    app.include_router(routes_sessions.router, tags=["sessions"])
    app.include_router(routes_keys.router, tags=["keys"])
    app.include_router(routes_chat.router, tags=["chat"])
    app.include_router(routes_cli_oidc.router, tags=["auth"])
    app.include_router(web_routes.router)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return Response(status_code=303, headers={"Location": "/ui/"})

    return app
