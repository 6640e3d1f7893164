"""A world for attacking the SSH gateway: a real broker with its gateway (one worker), two
certified sshds and an impostor sshd with a plain host key, with a small exec-recording cap, a small
failure budget and a small connection cap so that floods stay small. ``web-1`` is reached through a
relay the test can hold (a revoke can land while the gateway is still connecting) or point at the
impostor. Also a hostile asyncssh client, and a way to tell which process holds a socket.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from gatewayworld import GatewayWorld, start_world
from sshd import SshdFactory, sshd_logins

__all__ = ["held", "sshd_logins", "world"]

POLICY = """
targets:
  - {{name: web-1, kind: ssh, address: 127.0.0.1, port: {held}}}
  - {{name: web-2, kind: ssh, address: 127.0.0.1, port: {web2}}}
roles:
  - name: shell
    targets: {{names: [web-1]}}
    ssh: {{logins: [deploy]}}
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
  - name: forced
    targets: {{names: [web-2]}}
    ssh: {{logins: [ops], force_command: "echo forced-for-$USER"}}
    min_duration: 1s
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
"""
FAILURES_PER_SOURCE = 5
EXEC_RECORD_BYTES = 1024
MAX_CONNECTIONS = 6
ENDS_WITHIN = 2.0


class HeldRelay:
    """A TCP relay in front of a target whose onward connect waits while ``held`` is clear."""

    def __init__(self) -> None:
        self.upstream = 0
        self.released = threading.Event()
        self.released.set()
        self.accepted = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted.set()
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        self.released.wait(30)
        with (
            contextlib.suppress(OSError),
            client,
            socket.create_connection(("127.0.0.1", self.upstream)) as up,
        ):
            done = threading.Event()

            def copy(a: socket.socket, b: socket.socket) -> None:
                with contextlib.suppress(OSError):
                    while chunk := a.recv(65536):
                        b.sendall(chunk)
                done.set()

            for a, b in ((up, client), (client, up)):
                threading.Thread(target=copy, args=(a, b), daemon=True).start()
            done.wait()
            for each in (up, client):  # either side ending ends both, as one TCP connection would
                with contextlib.suppress(OSError):
                    each.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def held() -> Iterator[HeldRelay]:
    relay = HeldRelay()
    yield relay
    relay.close()


@pytest.fixture(scope="module")
def world(
    sshd_logins: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory, held: HeldRelay
) -> Iterator[GatewayWorld]:
    factory = SshdFactory(tmp_path_factory)
    env = {
        "JITGATE_AUTH_FAILURES_PER_SOURCE": str(FAILURES_PER_SOURCE),
        "JITGATE_GATEWAY_EXEC_RECORD_BYTES": str(EXEC_RECORD_BYTES),
        "JITGATE_GATEWAY_MAX_SESSIONS": str(MAX_CONNECTIONS),
    }
    found = start_world(
        tmp_path_factory.mktemp("gateway-attacks"),
        factory,
        env=env,
        workers=1,
        policy=POLICY,
        ports={"held": held.port},
    )
    held.upstream = found.targets["web-1"].port
    found.targets["impostor"] = factory(target="web-1")  # a plain host key, no certificate
    yield found
    found.server.stop()
    factory.stop_all()


async def hostile_client(world: GatewayWorld, user: str, username: str) -> asyncssh.SSHClientConnection:
    """An asyncssh client signed in with ``user``'s key, free to send whatever SSH allows."""
    return await asyncssh.connect(
        "127.0.0.1",
        world.gateway_port,
        username=username,
        client_keys=[asyncssh.read_private_key(world.keys[user])],
        known_hosts=None,
        agent_path=None,
        config=[],
    )


def socket_owner(port: int) -> str:
    """The command name of the process holding the local TCP socket bound to ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if str(fd.readlink()) in inodes:
                        return (fd_dir.parent / "comm").read_text().strip()
    return "?"


def recording_text(world: GatewayWorld, session_id: str) -> str:
    directory = world.data / "recordings" / session_id
    return "".join(path.read_text(errors="replace") for path in sorted(directory.iterdir()))


def ended_session(world: GatewayWorld, grant: str) -> dict[str, object]:
    return world.wait_for(  # type: ignore[no-any-return]
        "the session's end on record",
        lambda: [s for s in world.sessions() if s["grant"] == grant and s["state"] != "live"],
    )[0]
