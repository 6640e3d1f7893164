"""The SSH gateway attacked from outside: no key, a stranger's key, many keys, idle connections, a
target that is not the one it claims to be. What an outsider gets is a refusal, and what they can
make the gateway write or hold is bounded."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import asyncssh
import httpx
import pytest
from gatewayattacks import (
    FAILURES_PER_SOURCE,
    MAX_CONNECTIONS,
    HeldRelay,
    held,
    sshd_logins,
    world,
)
from gatewayworld import GatewayWorld

from jitgate.gateway.server import MAX_UNKNOWN_KEYS

__all__ = ["held", "sshd_logins", "world"]
pytestmark = pytest.mark.sshd


def test_a_flood_of_unknown_keys_writes_a_bounded_number_of_audit_records(world: GatewayWorld) -> None:
    marker = "flood@web-1"

    def attempt(_: int) -> int:
        argv = world.ssh_argv("carol", marker, ["true"])  # carol's key was never registered
        return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode

    attempts = 4 * FAILURES_PER_SOURCE
    with ThreadPoolExecutor(MAX_CONNECTIONS - 2) as pool:
        assert set(pool.map(attempt, range(attempts))) == {255}
    throttled = world.wait_for(
        "the throttling on record",
        lambda: [e for e in world.audit(action="auth.throttled") if e["details"]["via"] == "gateway"],
    )
    assert len(throttled) == 1
    # each refusal is counted before it is written, so the bound holds for the ones still landing
    refusals = [e for e in world.audit() if e.get("target") == marker]
    assert 1 <= len(refusals) <= FAILURES_PER_SOURCE
    assert throttled[0]["details"]["source"] == "127.0.0.1"
    # and a registered key from the same address still signs in (bob holds no grant here)
    assert b"holds no active grant" in world.ssh("bob", "web-1", "true").stderr


def test_idle_unauthenticated_connections_cannot_lock_out_a_user_with_a_grant(world: GatewayWorld) -> None:
    grant = world.grant("dave", "tunnel")
    idle = [socket.create_connection(("127.0.0.1", world.gateway_port)) for _ in range(MAX_CONNECTIONS)]
    try:
        world.wait_for(  # accepted by the gateway, and waiting to sign in
            "the idle connections held",
            lambda: httpx.get(f"{world.url}/healthz").json()["gateway"]["signing_in"] >= MAX_CONNECTIONS,
        )
        done = world.ssh("dave", "web-2", "echo in", timeout=20)
    finally:
        for sock in idle:
            sock.close()
        world.revoke("dave", grant)
    assert done.stdout == b"in\n", done.stderr


def test_a_connection_offering_many_unknown_keys_is_dropped_before_its_lookups_add_up(
    world: GatewayWorld,
) -> None:
    grant = world.grant("alice", "tunnel")
    registered = asyncssh.read_private_key(world.keys["alice"])

    async def sign_in(strangers: int) -> str:
        keys = [asyncssh.generate_private_key("ssh-ed25519") for _ in range(strangers)]
        try:
            async with asyncssh.connect(
                "127.0.0.1",
                world.gateway_port,
                username="web-2",
                client_keys=[*keys, registered],
                known_hosts=None,
                agent_path=None,
                config=[],
            ) as conn:
                return str((await conn.run("echo in", check=False)).stdout)
        except (asyncssh.PermissionDenied, asyncssh.ConnectionLost, asyncssh.DisconnectError):
            return "dropped"

    try:
        assert asyncio.run(sign_in(MAX_UNKNOWN_KEYS - 1)) == "in\n"
        assert asyncio.run(sign_in(MAX_UNKNOWN_KEYS + 4)) == "dropped"
    finally:
        world.revoke("alice", grant)


def test_a_target_without_a_host_certificate_from_jitgate_is_refused(
    world: GatewayWorld, held: HeldRelay
) -> None:
    grant = world.grant("dave", "shell")
    held.upstream = world.targets["impostor"].port
    try:
        done = world.ssh("dave", "web-1", "echo reached")
    finally:
        held.upstream = world.targets["web-1"].port
        world.revoke("dave", grant)
    # It offers no certificate the gateway would take, so the key exchange itself fails.
    assert done.stdout == b""
    assert done.returncode == 1
    assert b"jitgate: target web-1 (127.0.0.1:" in done.stderr
