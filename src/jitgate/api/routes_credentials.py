"""Credentials under a grant (SSH certificates, database logins) and the SSH CA's public material.

Responses that carry a secret are marked ``Cache-Control: no-store``. The CA public keys and the
key revocation list are public: targets fetch them without a token.

Every refusal on the issuing routes is audited as ``access.refused``, including bodies refused
before a route runs (unknown fields, bad JSON, too large): ``audit_refused_body`` is called for
those by the error handlers, when the caller can be identified.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from jitgate.api.deps import Caller, Ctx, caller, json_body, runtime
from jitgate.api.group_commit import GroupCommit
from jitgate.api.schemas import DbCredentialCreate, HostCertificateCreate, SshCertificateCreate
from jitgate.audit import redact
from jitgate.auth.base import authenticate
from jitgate.domain import sshnames
from jitgate.domain.durations import parse_duration
from jitgate.domain.identity import Identity
from jitgate.domain.model import RequestState
from jitgate.errors import InvalidInput, JitgateError, PolicyDenied, ProviderError, StorageUnavailable
from jitgate.policy.decision import may_request
from jitgate.policy.model import Target
from jitgate.providers.ssh.ca import CaKind
from jitgate.providers.ssh.provider import SshCertificateProvider
from jitgate.store import issuance
from jitgate.store import queries as q
from jitgate.workflow import credentials, minting
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.minting import MintAsk, Minted
from jitgate.workflow.views import _iso

router = APIRouter(prefix="/api/v1")
NO_STORE = {"Cache-Control": "no-store"}
log = logging.getLogger("jitgate.api")

ISSUE = "credential.issue"
HOST_CERTIFICATE = "host_certificate.issue"
AUDITED_BODIES = {
    "/api/v1/ssh/certificates": ISSUE,
    "/api/v1/db/credentials": ISSUE,
    "/api/v1/ssh/host-certificates": HOST_CERTIFICATE,
}
"""Routes whose refused bodies are audited: they hand out credentials."""


def ssh_provider(ctx: WorkflowContext) -> SshCertificateProvider:
    provider = ctx.providers.get("ssh")
    if not isinstance(provider, SshCertificateProvider):
        raise ProviderError("the SSH certificate authority is not configured")
    return provider


def host_patterns(target: Target) -> list[str]:
    """known_hosts names for a target, as the ssh client looks them up."""
    return known_host_names([n for n in (target.address, target.name) if n], target.effective_port)


def known_host_names(names: list[str], port: int) -> list[str]:
    """known_hosts names for a host reached by ``names`` on ``port``, duplicates dropped.

    ssh looks a host on a port other than 22 up as ``[host]:port``; a bare name would never match.
    """
    return [name if port == 22 else f"[{name}]:{port}" for name in dict.fromkeys(names)]


def _require_kind(ctx: WorkflowContext, identity: Identity, name: str, *, ssh: bool) -> Target | None:
    target = ctx.policy.target(name)
    with ctx.refusals_audited(identity, ISSUE, target=name):
        if target is not None and (target.kind == "ssh") != ssh:
            use = "jitgate ssh" if target.kind == "ssh" else "jitgate db"
            raise InvalidInput(f"target {name} is of kind {target.kind}; use {use}")
    return target


def certificate_minter(ctx: WorkflowContext, executor: Executor | None) -> GroupCommit[MintAsk, Minted]:
    """Certificates asked for at the same moment are minted and committed together.

    On SQLite writes are one at a time anyway, so the batches run on the app's one writer thread.
    """
    return GroupCommit(lambda asks: minting.mint_many(ctx, asks), executor)


SSH_CERTIFICATE_PATH = "/api/v1/ssh/certificates"
SSH_CERTIFICATE_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SshCertificateCreate.model_json_schema()}},
    }
}


async def ssh_certificate(request: Request) -> JSONResponse:
    """An OpenSSH user certificate for the caller's key, only under an active grant for the target.

    The busiest route, so ``create_app`` mounts it first and it parses its own body: FastAPI's
    route matching through included routers and its dependency solving cost more than the rest
    of the request together. Same checks, same errors.
    """
    body = await json_body(request, SshCertificateCreate)
    identity = await caller(request, request.headers.get("authorization"))
    ctx = runtime(request).ctx
    params: dict[str, Any] = {"public_key": body.public_key}
    params["source_address"] = request.client.host if request.client else None
    if body.login is not None:
        params["login"] = body.login
    minter: GroupCommit[MintAsk, Minted] = request.app.state.certificate_minter
    minted = await minter.submit(MintAsk(identity, body.target, params, kind="ssh"))
    issued, target = minted.issued, minted.target
    payload = {
        "certificate": issued.secret["certificate"],
        "grant_id": minted.grant.id,
        "serial": issued.record["serial"],
        "principals": issued.record["principals"],
        "logins": [sshnames.login_of(p, target.name) for p in issued.record["principals"]],
        "valid_after": _iso(issued.valid_after),
        "valid_before": _iso(issued.valid_before),
        "target": {"name": target.name, "address": target.address, "port": target.effective_port},
        "known_hosts": ssh_provider(ctx).ca_store.known_hosts_lines(host_patterns(target), ctx.clock.now()),
    }
    return JSONResponse(payload, status_code=201, headers=NO_STORE)


@router.get("/ssh/targets")
def ssh_targets(identity: Caller, ctx: Ctx) -> list[dict[str, Any]]:
    """SSH targets the caller may ask for or holds a grant on, with the logins offered there."""
    policy = ctx.policy
    with ctx.db.read() as conn:
        held = {g.role for g in q.list_grants(conn, holder=identity.name, states=(RequestState.ACTIVE,))}
    found: dict[str, dict[str, Any]] = {}
    for role in policy.roles:
        if role.ssh is None or not (role.name in held or may_request(identity, role)):
            continue
        for target in policy.targets_of(role):
            if target.kind != "ssh":
                continue
            entry = found.setdefault(
                target.name,
                {
                    "name": target.name,
                    "address": target.address,
                    "port": target.effective_port,
                    "logins": [],
                    "roles": [],
                },
            )
            entry["logins"].extend(x for x in role.ssh.logins if x not in entry["logins"])
            entry["roles"].append(role.name)
    return list(found.values())


@router.post("/ssh/host-certificates", status_code=201)
def host_certificate(body: HostCertificateCreate, identity: Caller, ctx: Ctx) -> dict[str, Any]:
    """A host certificate from the host CA for sshd's ``HostCertificate`` (admins only)."""
    with ctx.refusals_audited(identity, HOST_CERTIFICATE):
        if not identity.admin:
            raise PolicyDenied(f"{identity.name} is not an admin; only admins certify hosts")
        try:
            validity = parse_duration(body.validity)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        issued = ssh_provider(ctx).host_certificate(
            body.public_key, body.principals, validity, ctx.clock.now()
        )
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
        rows = issuance.revoked_unexpired(conn, kind="ssh", now=now)
    revoked = [(r["record"].get("ca_fingerprint", ""), int(r["handle"])) for r in rows]
    blob = ssh_provider(ctx).krl(revoked, int(now.timestamp()), now)
    return Response(blob, media_type="application/octet-stream", headers={"Cache-Control": "no-cache"})


@router.post("/ca/ssh/rotate")
def ca_rotate(identity: Caller, ctx: Ctx, kind: str = "user", overlap: str = "24h") -> dict[str, Any]:
    with ctx.refusals_audited(identity, "ca.rotate"):
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
    _require_kind(ctx, identity, body.target, ssh=False)
    grant, issued = credentials.issue(ctx, identity, body.target)
    response.headers.update(NO_STORE)
    return {
        **dict(issued.secret),
        "grant_id": grant.id,
        "expires_at": _iso(grant.expires_at),
        "valid_before": _iso(issued.valid_before),
    }


def _audit_refused_body(request: Request, code: str, detail: str) -> None:
    rt = runtime(request)
    try:
        identity = authenticate(rt.authenticators, request.headers.get("authorization"))
    except JitgateError:
        return  # an unidentified caller is answered but not audited: anyone could fill the log
    # The detail may quote the body (an unknown field's name): recorded safely, never refused.
    event = redact.refusal(
        at=rt.ctx.clock.now(),
        actor=identity.name,
        attempted=AUDITED_BODIES[request.url.path],
        error=code,
        reason=detail,
        tag=rt.ctx.audit.withheld_tag,
    )
    try:
        with rt.ctx.transaction(parks_audit=True) as conn:
            rt.ctx.record_events(conn, [event])
    except StorageUnavailable:
        log.exception("could not audit a refused request body from %s", identity.name)


async def audit_refused_body(request: Request, code: str, detail: str) -> None:
    """Audit a body refused before an issuing route ran; other routes are left alone."""
    if request.method == "POST" and request.url.path in AUDITED_BODIES:
        await run_in_threadpool(_audit_refused_body, request, code, detail)
