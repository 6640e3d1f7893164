"""A world for the SSH gateway end to end: a real ``jitgate server --gateway-listen``, two real sshds
configured as targets (host certificates from the broker's host CA, the user CA trusted, principals
bound to the target), people with registered keys, and the real OpenSSH client (ssh, scp, sftp,
rsync) pointed at the gateway with nothing but ``@cert-authority`` trust. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sshd import CLIENT_OPTIONS, Sshd, SshdFactory, empty_krl, sshd_logins

from jitgate.clock import SystemClock
from jitgate.providers.ssh.ca import CaKind, CaStore
from jitgate.providers.ssh.provider import SshCertificateProvider
from support.broker import JITGATE, Server, free_port

__all__ = ["GatewayWorld", "gateway_world", "sshd_logins"]

POLICY = """
targets:
  - {{name: web-1, kind: ssh, address: 127.0.0.1, port: {web1}}}
  - {{name: web-2, kind: ssh, address: 127.0.0.1, port: {web2}}}
  - {{name: web-3, kind: ssh, address: 127.0.0.1, port: {web3}}}
roles:
  - name: shell
    targets: {{names: [web-1, web-3]}}
    ssh: {{logins: [deploy, ops]}}
    min_duration: 1s
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
  - name: tunnel
    targets: {{names: [web-2]}}
    ssh: {{logins: [deploy], port_forwarding: true}}
    min_duration: 1s
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
"""
USERS = {"alice": ["engineers"], "bob": ["engineers"], "carol": ["engineers"], "dave": ["engineers"]}
CLOCK = SystemClock()


def offline(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*JITGATE, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done


@dataclass
class GatewayWorld:
    tmp: Path
    data: Path
    server: Server
    gateway_port: int
    targets: dict[str, Sshd]
    tokens: dict[str, str]
    keys: dict[str, Path]
    known_hosts: Path
    grants: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def http(self, method: str, path: str, user: str | None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def grant(self, user: str, role: str, duration: str = "1h") -> str:
        granted = self.http("POST", "/api/v1/requests", user, json={"role": role, "duration": duration})
        assert granted.status_code in (200, 201), granted.text
        assert granted.json()["state"] == "ACTIVE", granted.text
        return str(granted.json()["grant"]["id"])

    def revoke(self, user: str, grant: str) -> None:
        done = self.http("POST", f"/api/v1/grants/{grant}/revoke", user, json={"comment": "test"})
        assert done.status_code == 200, done.text

    def audit(self, **params: str) -> list[dict[str, Any]]:
        response = self.http("GET", "/api/v1/audit", "admin", params={"limit": "1000", **params})
        assert response.status_code == 200, response.text
        return sorted(response.json(), key=lambda e: int(e["seq"]))

    def ssh_options(self, user: str, key: Path | None = None) -> list[str]:
        return [
            *CLIENT_OPTIONS,
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-i", str(key or self.keys[user]),
        ]  # fmt: skip

    def ssh_argv(
        self, user: str, destination: str, command: Sequence[str] = (), *, extra: Sequence[str] = ()
    ) -> list[str]:
        return [
            "ssh", *self.ssh_options(user), "-p", str(self.gateway_port), *extra,
            f"{destination}@127.0.0.1", *command,
        ]  # fmt: skip

    def ssh(
        self,
        user: str,
        destination: str,
        *command: str,
        extra: Sequence[str] = (),
        input: bytes | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.ssh_argv(user, destination, command, extra=extra),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def jitgate(
        self, *args: str, user: str = "admin", timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "JITGATE_URL": self.url, "JITGATE_TOKEN": self.tokens[user]}
        env["XDG_CONFIG_HOME"] = str(self.tmp / f"cfg-{user}")
        return subprocess.run(
            [*JITGATE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def sessions(self, user: str = "admin", **params: str) -> list[dict[str, Any]]:
        """Sessions as ``user`` sees them: everyone's for the admin."""
        if user == "admin":
            params = {"user": "*", **params}
        found = self.http("GET", "/api/v1/sessions", user, params=params)
        assert found.status_code == 200, found.text
        return list(found.json())

    def session_of_grant(self, grant: str, *, live: bool | None = None) -> dict[str, Any]:
        mine = [s for s in self.sessions() if s["grant"] == grant]
        if live is not None:
            mine = [s for s in mine if (s["state"] == "live") == live]
        assert mine, f"no session under {grant}"
        return mine[0]

    def wait_for(self, what: str, check: Any, timeout: float = 10.0) -> Any:
        """Poll ``check`` until it returns something truthy (the gateway works asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.05)  # polling for the broker, not waiting for time to pass
        pytest.fail(f"timed out waiting for {what}")


def new_key(directory: Path, name: str, kind: str = "ed25519") -> Path:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


def certified_target(factory: SshdFactory, tmp: Path, provider: SshCertificateProvider, target: str) -> Sshd:
    host_key = new_key(tmp, f"host-{target}")
    issued = provider.host_certificate(
        host_key.with_suffix(".pub").read_text(), ["127.0.0.1", target], timedelta(days=1)
    )
    return factory(
        target=target,
        trusted_ca_lines=provider.ca_store.public_lines(CaKind.USER, CLOCK.now()),
        revoked_keys=empty_krl(tmp),
        host_certificate=issued.secret["certificate"],
        host_key=host_key,
        # many gateway connections arrive at once in the concurrency test
        extra_lines=["MaxStartups 200", "MaxSessions 50", "Subsystem sftp internal-sftp"],
    )


def start_world(
    tmp: Path,
    factory: SshdFactory,
    *,
    env: dict[str, str] | None = None,
    workers: int = 1,
    policy: str = POLICY,
    ports: Mapping[str, int] | None = None,
) -> GatewayWorld:
    """The world, under ``policy`` (``{web1}``, ``{web2}``, ``{web3}`` and each of ``ports`` filled in)."""
    data = tmp / "data"
    tokens = {}
    for name, groups in {**USERS, "admin": []}.items():
        flags = [f"--group={g}" for g in groups] + (["--admin"] if name == "admin" else [])
        added = offline("users", "add", name, *flags, "--data-dir", str(data), "--json")
        tokens[name] = json.loads(added.stdout)["token"]
    provider = SshCertificateProvider(CaStore(data / "ca"), CLOCK)
    targets = {name: certified_target(factory, tmp, provider, name) for name in ("web-1", "web-2")}
    # web-3 trusts the user CA but shows a plain host key: the gateway must not go there.
    targets["web-3"] = factory(
        target="web-3",
        trusted_ca_lines=provider.ca_store.public_lines(CaKind.USER, CLOCK.now()),
        revoked_keys=empty_krl(tmp),
    )
    policy_file = tmp / "policy.yaml"
    policy_file.write_text(
        policy.format(
            web1=targets["web-1"].port,
            web2=targets["web-2"].port,
            web3=targets["web-3"].port,
            **(ports or {}),
        )
    )
    gateway_port = free_port()
    server_env = {
        "JITGATE_GATEWAY_LISTEN": f"127.0.0.1:{gateway_port}",
        "JITGATE_WORKERS": str(workers),
        **(env or {}),
    }
    server = Server.start(data, policy_file, tmp / "server.log", server_env)
    known_hosts = tmp / "gateway_known_hosts"
    lines = provider.ca_store.known_hosts_lines([f"[127.0.0.1]:{gateway_port}"], CLOCK.now())
    known_hosts.write_text("\n".join(lines) + "\n")
    world = GatewayWorld(tmp, data, server, gateway_port, targets, tokens, {}, known_hosts)
    for user in ("alice", "bob", "dave", "admin"):
        world.keys[user] = new_key(tmp, f"key-{user}")
        added = world.http(
            "POST",
            "/api/v1/keys",
            user,
            json={"public_key": world.keys[user].with_suffix(".pub").read_text()},
        )
        assert added.status_code == 201, added.text
    world.keys["carol"] = new_key(tmp, "key-carol")  # never registered
    return world


@pytest.fixture(scope="module")
def gateway_world(
    sshd_logins: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayWorld]:
    factory = SshdFactory(tmp_path_factory)
    # Two workers: a session is held by one of them, the revoke or kill may reach the other.
    world = start_world(tmp_path_factory.mktemp("gateway"), factory, workers=2)
    world.grants["alice"] = world.grant("alice", "shell")
    world.grants["alice-tunnel"] = world.grant("alice", "tunnel")
    yield world
    world.server.stop()
    factory.stop_all()
