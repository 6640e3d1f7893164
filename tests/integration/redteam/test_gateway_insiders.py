"""The SSH gateway attacked from inside: a user with a grant who wants more than it gives (another
command, a forward the role does not allow, the gateway host's own ports, more channels than the
gateway can hold, time after the grant ends, a session that is not recorded). What they get is what
the grant allows, for as long as it lasts, and all of it recorded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import threading
import time

import asyncssh
import pytest
from gatewayattacks import (
    ENDS_WITHIN,
    EXEC_RECORD_BYTES,
    HeldRelay,
    ended_session,
    held,
    hostile_client,
    recording_text,
    socket_owner,
    sshd_logins,
    world,
)
from gatewayworld import GatewayWorld

from jitgate.gateway.server import MAX_CHANNELS

__all__ = ["held", "sshd_logins", "world"]
pytestmark = pytest.mark.sshd


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
            for _ in range(100):  # the gateway counts the closed one out as it sees the close
                with contextlib.suppress(asyncssh.ChannelOpenError):
                    _, again = await conn.open_connection("127.0.0.1", port)
                    again.close()
                    return len(held), refused
                await asyncio.sleep(0.05)
            pytest.fail("the channel given back made no room")

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
