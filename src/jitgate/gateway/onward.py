"""The gateway's way to the target: decide, mint a certificate for this one connection, connect.

Everything the user could otherwise hold stays here: the key is made in memory for one
connection, its certificate is minted through the broker's normal minting path (the same checks,
the same ``credential.issued`` record, bound to this target, valid a few minutes), and the target
must prove itself with a host certificate from jitgate's host CA before anything is relayed.

``decide`` and ``mint`` are blocking (they use the database) and run in a worker thread;
``connect`` runs on the event loop.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime

import asyncssh

from jitgate.domain.identity import Identity
from jitgate.domain.model import Grant
from jitgate.errors import InvalidInput, JitgateError, PolicyDenied, ProviderError
from jitgate.gateway.addressing import choose_login, parse
from jitgate.policy.decision import target_named
from jitgate.policy.model import Role, Target
from jitgate.providers.ssh.ca import CaKind
from jitgate.providers.ssh.provider import SshCertificateProvider
from jitgate.store import queries as q
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.minting import MintAsk, covering_grant, mint_many, role_of

ACTION = "session.open"
CONNECT_TIMEOUT = 10.0
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
"""AEAD ciphers only on both of the gateway's legs. AES-GCM runs in OpenSSL in one pass per
packet; chacha20-poly1305 costs the gateway, which does every byte's crypto twice in Python's
event loop, about half again as much (``bench/gateway.py``)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Where a gateway connection goes, decided before anything is minted."""

    identity: Identity
    target: Target
    login: str
    grant: Grant
    role: Role


@dataclass(frozen=True, slots=True)
class Credential:
    key: asyncssh.SSHKey
    certificate: asyncssh.SSHCertificate
    serial: str
    grant: Grant


def decide(ctx: WorkflowContext, identity: Identity, username: str) -> Plan:
    """The target, login, grant and role a user name asks for; refusals are audited."""
    with ctx.refusals_audited(identity, ACTION, target=username[:64]):
        address = parse(username)
        target = target_named(ctx.policy, address.target)
        if target.kind != "ssh":
            raise InvalidInput(f"target {target.name} is of kind {target.kind}, not ssh")
        with ctx.db.read() as conn:
            in_force = q.active_grants_of(conn, identity.name, ctx.clock.now())
        grant = covering_grant(in_force, identity.name, target.name)
        role = role_of(ctx, grant)
        if role.ssh is None:
            raise PolicyDenied(f"role {role.name} gives no ssh access")
        login = choose_login(address, role.ssh.logins, role.name)
    return Plan(identity=identity, target=target, login=login, grant=grant, role=role)


def mint(ctx: WorkflowContext, plan: Plan) -> Credential:
    """A fresh key and a certificate for it, minted (and audited) like any other certificate."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment="jitgate-gateway-onward")
    public_line = key.export_public_key().decode().strip()
    params = {
        "public_key": public_line,
        "login": plan.login,
        "source_address": source_address_towards(plan.target),
    }
    (result,) = mint_many(ctx, [MintAsk(plan.identity, plan.target.name, params, kind="ssh")])
    if isinstance(result, JitgateError):
        raise result
    certificate = asyncssh.import_certificate(result.issued.secret["certificate"])
    return Credential(key=key, certificate=certificate, serial=result.issued.handle, grant=result.grant)


def source_address_towards(target: Target) -> str | None:
    """The address this host connects to ``target`` from (for a role's ``source_address: [caller]``).

    A UDP socket's ``connect`` picks the route without sending anything.
    """
    if target.address is None:
        return None
    try:
        infos = socket.getaddrinfo(target.address, target.effective_port, type=socket.SOCK_DGRAM)
        family, _, _, _, sockaddr = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(sockaddr)
            return str(probe.getsockname()[0])
    except OSError:
        return None


def host_ca_keys(provider: SshCertificateProvider, now: datetime) -> list[asyncssh.SSHKey]:
    return [asyncssh.import_public_key(line) for line in provider.ca_store.public_lines(CaKind.HOST, now)]


async def connect(
    plan: Plan, credential: Credential, ca_keys: list[asyncssh.SSHKey]
) -> asyncssh.SSHClientConnection:
    """An SSH connection to the target as ``plan.login``, its host key proven by the host CA."""
    target = plan.target
    where = f"{target.address}:{target.effective_port}"
    try:
        return await asyncssh.connect(
            target.address,
            target.effective_port,
            username=plan.login,
            client_keys=[(credential.key, credential.certificate)],
            known_hosts=([], ca_keys, []),
            # Offer plain host key types too, so a target without a certificate is told apart
            # (and refused as such) instead of failing the key exchange: only a host certificate
            # from the host CA is ever trusted.
            server_host_key_algs="default",
            encryption_algs=list(CIPHERS),
            agent_path=None,
            config=[],
            preferred_auth="publickey",
            connect_timeout=CONNECT_TIMEOUT,
            keepalive_interval=30,
            encoding=None,
        )
    except asyncssh.HostKeyNotVerifiable:
        raise ProviderError(
            f"target {target.name} ({where}) did not show a host certificate from jitgate's host CA"
        ) from None
    except asyncssh.PermissionDenied:
        raise ProviderError(
            f"target {target.name} refused the certificate for {plan.login} "
            f"(is it set up with jitgate target sshd-config {target.name}?)"
        ) from None
    except (OSError, TimeoutError, asyncssh.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise ProviderError(f"target {target.name} ({where}) cannot be reached: {reason}") from None
