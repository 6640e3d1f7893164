"""The SSH gateway under attack, from outside (no key, a stranger's key, idle connections) and from
inside (a user with a grant who wants more than it gives): what each attack gets, which is nothing
but what the grant allows, and what is written down about it.

One world for all of them (a real broker with its gateway, two certified sshds), with a small
exec-recording cap and a small failure budget so that the floods stay small; ``web-1`` is reached
through a relay the test can hold, so that a revoke can land while the gateway is still connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncssh
import pytest

from jitgate.gateway.server import MAX_CHANNELS, MAX_UNKNOWN_KEYS

_HELPERS = str(Path(__file__).resolve().parents[1])
if _HELPERS not in sys.path:
    sys.path.insert(0, _HELPERS)

from gatewayworld import GatewayWorld, start_world  # noqa: E402
from sshd import SshdFactory, sshd_logins  # noqa: E402

__all__ = ["sshd_logins"]
pytestmark = pytest.mark.sshd

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


# -- outsiders ------------------------------------------------------------------------------------


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


@pytest.mark.xfail(
    strict=True,
    reason="connections that never sign in count against gateway_max_sessions like live sessions, "
    "for up to login_timeout (30 s) each: a few idle sockets lock everyone out. Needs a cap of its "
    "own for connections still signing in (sshd's MaxStartups) and a shorter sign-in time.",
)
def test_idle_unauthenticated_connections_cannot_lock_out_a_user_with_a_grant(world: GatewayWorld) -> None:
    grant = world.grant("dave", "tunnel")
    idle = [socket.create_connection(("127.0.0.1", world.gateway_port)) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)  # the gateway accepts them asynchronously
        done = world.ssh("dave", "web-2", "echo in", timeout=20)
    finally:
        for sock in idle:
            sock.close()
        world.revoke("dave", grant)
    assert done.stdout == b"in\n", done.stderr


# -- insiders -------------------------------------------------------------------------------------


def test_a_command_run_on_a_terminal_is_recorded_whole_not_under_the_exec_cap(world: GatewayWorld) -> None:
    grant = world.grant("alice", "tunnel")
    script = f"head -c {4 * EXEC_RECORD_BYTES} /dev/zero | tr '\\0' x; echo; echo after-the-cap-$((6*7))"
    done = world.ssh("alice", "web-2", script, extra=["-tt"])
    assert b"after-the-cap-42" in done.stdout, done.stderr
    session = ended_session(world, grant)
    world.revoke("alice", grant)
    assert "after-the-cap-42" in recording_text(world, str(session["id"]))
    kinds = [r["kind"] for r in session["recordings"]]  # type: ignore[union-attr]
    assert kinds == ["shell"]


@pytest.mark.xfail(
    strict=True,
    reason="a command without a terminal is recorded up to gateway_exec_record_bytes per direction "
    "(so bulk copies do not fill the disk); `ssh target bash` fed padding first runs whatever "
    "follows unrecorded. Recording stdin whole for shells, or refusing past the cap, is a policy "
    "decision.",
)
def test_a_shell_fed_on_stdin_past_the_exec_cap_is_still_recorded(world: GatewayWorld) -> None:
    grant = world.grant("alice", "tunnel")
    padding = b"#" * (2 * EXEC_RECORD_BYTES) + b"\n"
    done = world.ssh("alice", "web-2", "bash", input=padding + b"echo hidden-$((6*7))\n")
    assert done.stdout == b"hidden-42\n", done.stderr
    session = ended_session(world, grant)
    world.revoke("alice", grant)
    assert "echo hidden-" in recording_text(world, str(session["id"]))


def test_disabling_a_user_ends_their_open_session(world: GatewayWorld) -> None:
    world.grant("bob", "shell")
    ssh = subprocess.Popen(
        world.ssh_argv("bob", "web-1", ["echo started; sleep 60"]),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert ssh.stdout is not None
    assert ssh.stdout.readline() == b"started\n"
    disabled_at = time.monotonic()
    done = world.http("POST", "/api/v1/users/bob/disable", "admin")
    assert done.status_code == 200, done.text
    try:
        _, err = ssh.communicate(timeout=30)
        assert time.monotonic() - disabled_at < ENDS_WITHIN
        assert b"revoked; access ends" in err
        # and the key signs nobody in any more
        again = world.ssh("bob", "web-1", "true")
        assert again.returncode == 255
    finally:
        world.http("POST", "/api/v1/users/bob/enable", "admin")


def test_a_revoke_that_lands_while_the_gateway_connects_onward_lets_nothing_through(
    world: GatewayWorld, held: HeldRelay
) -> None:
    grant = world.grant("dave", "shell")
    held.released.clear()
    held.accepted.clear()
    ssh = subprocess.Popen(
        world.ssh_argv("dave", "web-1", ["echo ran-on-the-target"]),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert held.accepted.wait(20), "the gateway never started connecting onward"
        session = world.wait_for(
            "the live session",
            lambda: [s for s in world.sessions() if s["grant"] == grant and s["state"] == "live"],
        )[0]
        world.revoke("dave", grant)
        ended_session(world, grant)
    finally:
        held.released.set()
    out, err = ssh.communicate(timeout=30)
    assert b"ran-on-the-target" not in out
    assert ssh.returncode != 0, err
    assert f"jitgate: grant {grant} was revoked; access ends".encode() in err
    ended = next(s for s in world.sessions() if s["id"] == session["id"])
    assert "revoked" in str(ended["end_reason"])


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


def test_a_forward_to_loopback_is_opened_by_the_target_not_by_the_gateway(world: GatewayWorld) -> None:
    grant = world.grant("alice", "tunnel")
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[int] = []
    owners: list[str] = []

    def accept() -> None:
        peer, (_, port) = listener.accept()
        with peer:
            seen.append(port)
            owners.append(socket_owner(port))
            peer.sendall(b"loopback\n")

    threading.Thread(target=accept, daemon=True).start()

    async def forward() -> bytes:
        async with await hostile_client(world, "alice", "web-2") as conn:
            reader, _ = await conn.open_connection("127.0.0.1", listener.getsockname()[1])
            return await reader.readline()

    try:
        assert asyncio.run(forward()) == b"loopback\n"
    finally:
        listener.close()
        world.revoke("alice", grant)
    assert seen
    assert owners == ["sshd"]


def test_a_forced_command_runs_whatever_the_user_asks_for(world: GatewayWorld) -> None:
    grant = world.grant("bob", "forced")
    try:
        done = world.ssh("bob", "ops@web-2", "cat /etc/shadow")
    finally:
        world.revoke("bob", grant)
    assert done.stdout == b"forced-for-ops\n", done.stderr


def test_a_signal_that_ends_the_remote_command_comes_back_as_that_signal(world: GatewayWorld) -> None:
    grant = world.grant("alice", "tunnel")

    async def run() -> asyncssh.SSHCompletedProcess:
        async with await hostile_client(world, "alice", "web-2") as conn:
            return await conn.run("kill -TERM $$", check=False)

    try:
        done = asyncio.run(run())
    finally:
        world.revoke("alice", grant)
    assert done.exit_signal is not None
    assert done.exit_signal[0] == "TERM"


def test_one_connection_holds_a_bounded_number_of_channels_at_once(world: GatewayWorld) -> None:
    grant = world.grant("alice", "tunnel")
    listener = socket.create_server(("127.0.0.1", 0), backlog=MAX_CHANNELS + 20)
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]

    async def flood() -> tuple[int, list[str]]:
        async with await hostile_client(world, "alice", "web-2") as conn:
            opened = await asyncio.gather(
                *[conn.open_connection("127.0.0.1", port) for _ in range(MAX_CHANNELS + 10)],
                return_exceptions=True,
            )
            held = [pair for pair in opened if not isinstance(pair, BaseException)]
            refused = [str(e) for e in opened if isinstance(e, asyncssh.ChannelOpenError)]
            held[0][1].close()  # one given back makes room for one more
            await held[0][1].wait_closed()
            _, again = await conn.open_connection("127.0.0.1", port)
            again.close()
            return len(held), refused

    try:
        held, refused = asyncio.run(flood())
    finally:
        listener.close()
        for sock in accepted:
            sock.close()
        world.revoke("alice", grant)
    assert held == MAX_CHANNELS
    assert len(refused) == 10
    assert refused[0] == f"at most {MAX_CHANNELS} channels at once on one connection"


def test_forwards_a_role_does_not_allow_are_refused_and_audited_once_per_connection(
    world: GatewayWorld,
) -> None:
    grant = world.grant("dave", "shell")

    async def try_forwards() -> list[str]:
        async with await hostile_client(world, "dave", "web-1") as conn:
            refused = []
            for port in range(1, 21):
                try:
                    await conn.open_connection("forbidden.invalid", port)
                except asyncssh.ChannelOpenError as exc:
                    refused.append(exc.reason)
            return refused

    try:
        refused = asyncio.run(try_forwards())
    finally:
        world.revoke("dave", grant)
    assert refused == ["port forwarding is not allowed by role shell"] * 20
    audited = world.wait_for(
        "the refusal on record",
        lambda: [e for e in world.audit() if str(e.get("target")).startswith("forbidden.invalid:")],
    )
    assert [e["target"] for e in audited] == ["forbidden.invalid:1"]


def test_a_sender_faster_than_the_target_reads_is_held_back_not_buffered(world: GatewayWorld) -> None:
    grant = world.grant("alice", "tunnel")
    chunk = b"x" * 65536

    async def push() -> int:
        async with await hostile_client(world, "alice", "web-2") as conn:
            process = await conn.create_process("sleep 30", encoding=None)  # never reads its stdin
            sent = 0

            async def write() -> None:
                nonlocal sent
                while True:
                    process.stdin.write(chunk)
                    sent += len(chunk)
                    await process.stdin.drain()

            writer = asyncio.create_task(write())
            await asyncio.sleep(2)  # real time for the sender to push what the windows let through
            writer.cancel()
            process.close()
            return sent

    try:
        in_flight = asyncio.run(push())
    finally:
        world.revoke("alice", grant)
    # the SSH windows on both legs (2 MiB each) and the pipe into the command, not the gigabytes
    # the sender could have pushed in that time
    assert in_flight < 8 * 1024 * 1024, in_flight


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


def test_a_recording_directory_removed_mid_session_ends_the_session(world: GatewayWorld) -> None:
    grant = world.grant("dave", "tunnel")
    ssh = subprocess.Popen(
        world.ssh_argv("dave", "web-2", ["echo started; sleep 60"]),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert ssh.stdout is not None
        assert ssh.stdout.readline() == b"started\n"
        session = world.session_of_grant(grant, live=True)
        directory = world.data / "recordings" / str(session["id"])
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()  # what is written now would go nowhere anyone can read
        removed_at = time.monotonic()
        _, err = ssh.communicate(timeout=30)
        assert time.monotonic() - removed_at < ENDS_WITHIN
    finally:
        ssh.kill()
        world.revoke("dave", grant)
    assert b"recording" in err, err
