"""Credentials under a grant (SSH certificates, database logins) and the SSH CA's public material.

Responses that carry a secret are marked ``Cache-Control: no-store``. The CA public keys and the
key revocation list are public: targets fetch them without a token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from jitgate.api.deps import Caller, Ctx
from jitgate.api.schemas import DbCredentialCreate, HostCertificateCreate, SshCertificateCreate
from jitgate.domain.durations import parse_duration
from jitgate.errors import InvalidInput, PolicyDenied, ProviderError
from jitgate.providers.ssh.ca import CaKind
from jitgate.providers.ssh.provider import SshCertificateProvider
from jitgate.store import queries as q
from jitgate.workflow import credentials
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.views import _iso

router = APIRouter(prefix="/api/v1")
NO_STORE = {"Cache-Control": "no-store"}


def ssh_provider(ctx: WorkflowContext) -> SshCertificateProvider:
    provider = ctx.providers.get("ssh")
    if not isinstance(provider, SshCertificateProvider):
        raise ProviderError("the SSH certificate authority is not configured")
    return provider


@router.post("/ssh/certificates", status_code=201)
def ssh_certificate(
    body: SshCertificateCreate, identity: Caller, ctx: Ctx, request: Request, response: Response
) -> dict[str, Any]:
    """An OpenSSH user certificate for the caller's key, only under an active grant for the target."""
    target = ctx.policy.target(body.target)
    if target is not None and target.kind != "ssh":
        raise InvalidInput(f"target {body.target} is a {target.kind} target, not ssh")
    caller_address = request.client.host if request.client else None
    grant, issued = credentials.issue(
        ctx,
        identity,
        body.target,
        params={"public_key": body.public_key, "source_address": caller_address},
    )
    response.headers.update(NO_STORE)
    ssh = ssh_provider(ctx)
    now = ctx.clock.now()
    host_patterns = [t for t in (target.address, target.name) if t] if target else []
    return {
        "certificate": issued.secret["certificate"],
        "grant_id": grant.id,
        "serial": issued.record["serial"],
        "principals": issued.record["principals"],
        "valid_after": _iso(issued.valid_after),
        "valid_before": _iso(issued.valid_before),
        "target": {
            "name": body.target,
            "address": target.address if target else None,
            "port": target.effective_port if target else 22,
        },
        "known_hosts": ssh.ca_store.known_hosts_lines(host_patterns, now),
    }


@router.post("/ssh/host-certificates", status_code=201)
def host_certificate(body: HostCertificateCreate, identity: Caller, ctx: Ctx) -> dict[str, Any]:
    if not identity.admin:
        raise PolicyDenied(f"{identity.name} is not an admin; only admins certify hosts")
    try:
        validity = parse_duration(body.validity)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    issued = ssh_provider(ctx).host_certificate(body.public_key, body.principals, validity, ctx.clock.now())
    with ctx.db.write() as conn:
        ctx.audit_event(conn, identity.name, "host_certificate.issued", details=dict(issued.record))
    return {"certificate": issued.secret["certificate"], "valid_before": _iso(issued.valid_before)}


@router.get("/ca/ssh")
def ca_public_keys(ctx: Ctx) -> dict[str, Any]:
    store = ssh_provider(ctx).ca_store
    now = ctx.clock.now()
    return {
        "user": store.public_lines(CaKind.USER, now),
        "host": store.public_lines(CaKind.HOST, now),
        "keys": [k.to_json() for k in store.all_keys()],
    }


@router.get("/ca/ssh/krl")
def ca_krl(ctx: Ctx) -> Response:
    """The OpenSSH key revocation list of certificates revoked before their own end."""
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        rows = q.revoked_unexpired(conn, kind="ssh", now=now)
    revoked = [(r["record"].get("ca_fingerprint", ""), int(r["handle"])) for r in rows]
    blob = ssh_provider(ctx).krl(revoked, int(now.timestamp()), now)
    return Response(blob, media_type="application/octet-stream")


@router.post("/ca/ssh/rotate")
def ca_rotate(identity: Caller, ctx: Ctx, kind: str = "user", overlap: str = "24h") -> dict[str, Any]:
    if not identity.admin:
        raise PolicyDenied(f"{identity.name} is not an admin; only admins rotate the CA")
    try:
        span = parse_duration(overlap)
        ca_kind = CaKind(kind)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    info = ssh_provider(ctx).ca_store.rotate(ca_kind, span, ctx.clock.now())
    with ctx.db.write() as conn:
        ctx.audit_event(
            conn,
            identity.name,
            "ca.rotated",
            details={"kind": kind, "fingerprint": info.fingerprint, "overlap": overlap},
        )
    return info.to_json()


@router.post("/db/credentials", status_code=201)
def db_credential(body: DbCredentialCreate, identity: Caller, ctx: Ctx, response: Response) -> dict[str, Any]:
    """A fresh database login for the caller's active grant on the target. Shown once."""
    target = ctx.policy.target(body.target)
    if target is not None and target.kind == "ssh":
        raise InvalidInput(f"target {body.target} is an ssh target; use jitgate ssh")
    grant, issued = credentials.issue(ctx, identity, body.target)
    response.headers.update(NO_STORE)
    return {
        **dict(issued.secret),
        "grant_id": grant.id,
        "expires_at": _iso(grant.expires_at),
        "valid_before": _iso(issued.valid_before),
    }
