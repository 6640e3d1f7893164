"""Registered SSH keys over the API, and what a client needs to know to go through the SSH gateway.

``/keys`` are the keys people register for the gateway (their own; admins see and remove anyone's).
``/gateway/keys`` is the ephemeral key ``jitgate ssh --via-gateway`` registers for one connection.
``GET /gateway`` says where the gateway listens and which host CA vouches for it, as
``known_hosts`` lines; it needs a token like every other route.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query
from pydantic import Field

from jitgate.api.deps import Caller, RuntimeDep
from jitgate.api.routes_credentials import known_host_names, ssh_provider
from jitgate.api.schemas import Body
from jitgate.domain.durations import duration_argument
from jitgate.errors import Conflict
from jitgate.settings import Settings
from jitgate.workflow import keys

router = APIRouter(prefix="/api/v1")


class KeyCreate(Body):
    public_key: str = Field(min_length=1, max_length=16384)
    comment: str | None = Field(default=None, max_length=keys.MAX_COMMENT)
    expires_in: str | None = Field(default=None, max_length=32, examples=["90d"])


class GatewayKeyCreate(Body):
    public_key: str = Field(min_length=1, max_length=16384)


def gateway_address(settings: Settings) -> tuple[str, int] | None:
    """Where clients connect to the gateway: ``gateway_public_address``, else where it listens."""
    if not settings.gateway_listen:
        return None
    host, _, port = (settings.gateway_public_address or settings.gateway_listen).rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


@router.get("/keys")
def list_keys(
    identity: Caller, rt: RuntimeDep, user: str | None = Query(default=None, max_length=128)
) -> list[dict[str, Any]]:
    """Your registered SSH keys (ephemeral ones marked); admins may pass ``user=NAME`` or ``user=*``."""
    now = rt.ctx.clock.now()
    return [keys.key_json(k, now) for k in keys.list_keys(rt.ctx, identity, user=user)]


@router.post("/keys", status_code=201)
def add_key(body: KeyCreate, identity: Caller, rt: RuntimeDep) -> dict[str, Any]:
    """Register an OpenSSH public key for signing in at the SSH gateway."""
    longest = timedelta(seconds=rt.settings.gateway_key_lifetime_seconds)
    lifetime = duration_argument(body.expires_in) if body.expires_in else longest
    added = keys.add_key(
        rt.ctx, identity, body.public_key, comment=body.comment, lifetime=lifetime, max_lifetime=longest
    )
    return keys.key_json(added, rt.ctx.clock.now())


@router.delete("/keys/{key_id}")
def remove_key(key_id: str, identity: Caller, rt: RuntimeDep) -> dict[str, Any]:
    """Remove a key (yours; anyone's for admins); returns it as it was."""
    return keys.key_json(keys.remove_key(rt.ctx, identity, key_id), rt.ctx.clock.now())


@router.post("/gateway/keys", status_code=201)
def add_gateway_key(body: GatewayKeyCreate, identity: Caller, rt: RuntimeDep) -> dict[str, Any]:
    """Register a key for one connection through the gateway; it ends within minutes."""
    if gateway_address(rt.settings) is None:
        raise Conflict("the SSH gateway is not enabled on this broker")
    ttl = timedelta(seconds=rt.settings.gateway_ephemeral_key_seconds)
    added = keys.register_ephemeral(rt.ctx, identity, body.public_key, ttl=ttl)
    return keys.key_json(added, rt.ctx.clock.now())


@router.get("/gateway")
def gateway(identity: Caller, rt: RuntimeDep) -> dict[str, Any]:
    """Whether the SSH gateway is on, where to reach it, and the lines to trust its host key."""
    del identity  # authenticated, like every route that is not CA material
    address = gateway_address(rt.settings)
    if address is None:
        return {"enabled": False, "names": [], "known_hosts": []}
    host, port = address
    names = list(rt.settings.gateway_names) or [host]
    patterns = known_host_names(names, port)
    ctx = rt.ctx
    return {
        "enabled": True,
        "host": host,
        "port": port,
        "names": names,
        "known_hosts": ssh_provider(ctx).ca_store.known_hosts_lines(patterns, ctx.clock.now()),
    }
