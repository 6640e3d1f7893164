"""The FastAPI application: routes, problem+json errors, health, metrics, JWKS, body-size limit.

``create_app(runtime)`` builds the app around an assembled runtime; nothing happens at import.
The scheduler runs for as long as the app is served (the lifespan), in this process.

The body-size limit is a plain ASGI middleware, not ``@app.middleware("http")``: that one runs
every request through an extra task and memory streams (a fifth of the time of a small request),
and it could only check a declared ``Content-Length``, not a chunked body that never declares one.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jitgate import __version__
from jitgate.api import problems, routes_access, routes_audit, routes_credentials
from jitgate.api.deps import RuntimeDep
from jitgate.domain.model import RequestState
from jitgate.runtime import Runtime
from jitgate.store.tables import grants, requests, revocations
from jitgate.web import routes as web_routes

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
            revoking = conn.execute(
                sa.select(sa.func.count()).where(revocations.c.state == "pending")
            ).scalar_one()
            failing = conn.execute(
                sa.select(sa.func.count()).where(revocations.c.state == "pending", revocations.c.attempts > 0)
            ).scalar_one()
        yield GaugeMetricFamily("jitgate_active_grants", "Grants in force now", value=active)
        yield GaugeMetricFamily("jitgate_pending_requests", "Requests waiting for review", value=pending)
        yield GaugeMetricFamily("jitgate_pending_revocations", "Revocations not yet done", value=revoking)
        yield GaugeMetricFamily(
            "jitgate_failing_revocations",
            "Revocations that failed at least once and are retried",
            value=failing,
        )


def create_app(runtime: Runtime, *, run_scheduler: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if run_scheduler:
            runtime.scheduler.start()
        try:
            yield
        finally:
            runtime.scheduler.stop()
            app.state.writer.shutdown(wait=True)

    app = FastAPI(
        title="jitgate",
        version=__version__,
        description="Just-in-time privileged access broker",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jitgate-writer")
    problems.install(app, on_refused_body=routes_credentials.audit_refused_body)
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    registry = CollectorRegistry()
    registry.register(StateCollector(runtime))

    @app.get("/healthz", tags=["meta"])
    def healthz(rt: RuntimeDep) -> dict[str, Any]:
        with rt.ctx.db.read() as conn:
            conn.exec_driver_sql("SELECT 1")
        raw = rt.ctx.audit.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "status": "ok",
            "version": __version__,
            "policy_sha256": rt.policy_digest,
            "audit_public_key": raw.hex(),
        }

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

    app.include_router(routes_access.router, tags=["access"])
    app.include_router(routes_credentials.router, tags=["credentials"])
    app.include_router(routes_audit.router, tags=["audit"])
    app.include_router(web_routes.router)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return Response(status_code=303, headers={"Location": "/ui/"})

    return app
