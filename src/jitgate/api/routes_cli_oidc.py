"""What ``jitgate login --oidc`` needs to know, for anyone to read: the issuer, the CLI's public
client id and the scopes to ask for. Nothing here is secret (the CLI's client has no secret);
404 when the broker trusts no issuer or has no CLI client configured."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from jitgate.api.deps import RuntimeDep
from jitgate.errors import NotFound

router = APIRouter(prefix="/api/v1")


@router.get("/auth/oidc")
def cli_sign_in(rt: RuntimeDep) -> dict[str, Any]:
    """The identity provider the CLI signs in at (``issuer`` as the broker checks it in tokens)."""
    settings = rt.settings
    if not settings.oidc_issuer or not settings.oidc_cli_client_id:
        raise NotFound("this broker has no OpenID sign-in for the command line; use an API token")
    return {
        "issuer": settings.oidc_issuer,
        "client_id": settings.oidc_cli_client_id,
        "scopes": list(settings.oidc_cli_scopes),
    }
