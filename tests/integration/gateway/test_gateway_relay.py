"""Through the gateway with the real OpenSSH tools: the user holds no credential for the target, yet
exec, shells, scp, sftp and rsync work byte for byte, forwards only where the role allows them, and
whatever goes nowhere says why in one line."""

from __future__ import annotations

import os
import pty
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gatewayworld import GatewayWorld

pytestmark = pytest.mark.sshd


def test_exec_runs_as_the_login_and_passes_exit_status_and_both_streams(gateway_world: GatewayWorld) -> None:
    done = gateway_world.ssh("alice", "deploy@web-1", "id", "-un")
    assert (done.returncode, done.stdout) == (0, b"deploy\n"), done.stderr
    assert gateway_world.ssh("alice", "ops@web-1", "id -un").stdout == b"ops\n"
    assert gateway_world.ssh("alice", "deploy@web-1", "exit 7").returncode == 7
    both = gateway_world.ssh("alice", "deploy@web-1", "echo out; echo err >&2; exit 3")
    assert (both.returncode, both.stdout, both.stderr) == (3, b"out\n", b"err\n")
    stdin = gateway_world.ssh("alice", "deploy@web-1", "wc -c", input=b"x" * 100_000)
    assert stdin.stdout.strip() == b"100000"


def test_the_target_sees_a_certificate_minted_for_this_connection(gateway_world: GatewayWorld) -> None:
    grant = gateway_world.grants["alice"]
    assert gateway_world.ssh("alice", "deploy@web-1", "true").returncode == 0
    log = gateway_world.targets["web-1"].log()
    assert f"jitgate:user=alice:grant={grant}" in log
    issued = [e for e in gateway_world.audit(action="credential.issued") if e["grant_id"] == grant]
    assert issued
    assert issued[-1]["details"]["principals"] == ["deploy@web-1"]
    started = gateway_world.audit(action="session.started")
    assert any(e["details"]["credential_serial"] == issued[-1]["details"]["serial"] for e in started)


def test_a_role_with_one_login_needs_only_the_target_name(gateway_world: GatewayWorld) -> None:
    done = gateway_world.ssh("alice", "web-2", "id -un")
    assert (done.returncode, done.stdout) == (0, b"deploy\n"), done.stderr


def one_line(done: subprocess.CompletedProcess[bytes]) -> str:
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_no_grant_wrong_login_unknown_target_each_say_why_in_one_line(gateway_world: GatewayWorld) -> None:
    no_grant = gateway_world.ssh("bob", "deploy@web-1", "true")
    assert no_grant.returncode != 0
    assert one_line(no_grant) == "jitgate: bob holds no active grant for target web-1"

    wrong = gateway_world.ssh("alice", "root@web-1", "true")
    assert wrong.returncode != 0
    assert one_line(wrong) == "jitgate: login root is not one of role shell's logins (deploy, ops)"

    several = gateway_world.ssh("alice", "web-1", "true")
    assert "has several logins (deploy, ops): connect as LOGIN@web-1@GATEWAY" in one_line(several)

    unknown = gateway_world.ssh("alice", "deploy@nowhere", "true")
    assert unknown.returncode != 0
    assert one_line(unknown) == "jitgate: no target named 'nowhere'"

    refused = [e["details"] for e in gateway_world.audit(action="access.refused", actor="bob")]
    assert any(d["attempted"] == "session.open" for d in refused)


def test_an_unregistered_key_is_refused_at_sign_in(gateway_world: GatewayWorld) -> None:
    done = gateway_world.ssh("carol", "deploy@web-1", "true")
    assert done.returncode == 255
    assert "Permission denied (publickey)" in one_line(done)
    gateway_world.wait_for(
        "the refusal on record",
        lambda: [
            e
            for e in gateway_world.audit(action="access.refused", actor="anonymous")
            if e["details"]["reason"] == "no registered key was offered"
        ],
    )


def test_agent_and_x11_forwarding_and_remote_forwards_are_refused(gateway_world: GatewayWorld) -> None:
    done = gateway_world.ssh(
        "alice", "deploy@web-1", "echo ${SSH_AUTH_SOCK:-none} ${DISPLAY:-none}", extra=["-A", "-X"]
    )
    assert done.stdout == b"none none\n", done.stderr
    remote = gateway_world.ssh(
        "alice", "deploy@web-1", "true", extra=["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"]
    )
    assert remote.returncode == 255
    assert b"remote port forwarding failed" in remote.stderr.lower()


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return path


def test_scp_both_ways_is_byte_identical(gateway_world: GatewayWorld, payload: Path, tmp_path: Path) -> None:
    remote = f"/tmp/jg-gw-scp-{os.getpid()}"
    scp = ["scp", *gateway_world.ssh_options("alice"), "-P", str(gateway_world.gateway_port)]
    for mode in ([], ["-O"]):  # the SFTP protocol (the default) and the legacy scp protocol
        up = subprocess.run(
            [*scp, *mode, str(payload), f"deploy@web-1@127.0.0.1:{remote}"], capture_output=True, check=False
        )
        assert up.returncode == 0, up.stderr
        back = tmp_path / "back.bin"
        down = subprocess.run(
            [*scp, *mode, f"deploy@web-1@127.0.0.1:{remote}", str(back)], capture_output=True, check=False
        )
        assert down.returncode == 0, down.stderr
        assert back.read_bytes() == payload.read_bytes()
        back.unlink()
    gateway_world.ssh("alice", "deploy@web-1", f"rm -f {remote}")


def test_sftp_both_ways_is_byte_identical_and_recorded_as_operations(
    gateway_world: GatewayWorld, payload: Path, tmp_path: Path
) -> None:
    remote = f"/tmp/jg-gw-sftp-{os.getpid()}"
    batch = tmp_path / "batch"
    back = tmp_path / "back.bin"
    batch.write_text(f"mkdir {remote}\nput {payload} {remote}/p.bin\nget {remote}/p.bin {back}\n"
                     f"rm {remote}/p.bin\nrmdir {remote}\n")  # fmt: skip
    done = subprocess.run(
        ["sftp", *gateway_world.ssh_options("alice"), "-P", str(gateway_world.gateway_port), "-b", str(batch),
         "deploy@web-1@127.0.0.1"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert back.read_bytes() == payload.read_bytes()


def test_rsync_copies_through_the_gateway(gateway_world: GatewayWorld, payload: Path, tmp_path: Path) -> None:
    if shutil.which("rsync") is None:
        from support import component_missing

        component_missing("rsync")
    remote = f"/tmp/jg-gw-rsync-{os.getpid()}/"
    rsh = " ".join(["ssh", *gateway_world.ssh_options("alice"), "-p", str(gateway_world.gateway_port)])
    up = subprocess.run(
        ["rsync", "-a", "-e", rsh, str(payload), f"deploy@web-1@127.0.0.1:{remote}"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    back = tmp_path / "rsynced"
    down = subprocess.run(
        ["rsync", "-a", "-e", rsh, f"deploy@web-1@127.0.0.1:{remote}payload.bin", str(back)],
        capture_output=True, check=False,
    )  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == payload.read_bytes()
    gateway_world.ssh("alice", "deploy@web-1", f"rm -rf {remote}")


@pytest.fixture
def echo_server() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    listener.close()


def forwarded(world: GatewayWorld, destination: str, echo_port: int) -> tuple[bytes, str]:
    local = socket.socket()
    local.bind(("127.0.0.1", 0))
    local_port = local.getsockname()[1]
    local.close()
    tunnel = subprocess.Popen(
        world.ssh_argv("alice", destination, extra=["-N", "-L", f"{local_port}:127.0.0.1:{echo_port}"]),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", local_port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # polling for ssh to listen
        got = b""
        with client:
            client.sendall(b"hello through the tunnel")
            try:
                while len(got) < len(b"hello through the tunnel") and (chunk := client.recv(65536)):
                    got += chunk
            except ConnectionResetError:
                pass  # ssh drops the local connection of a refused forward
    finally:
        tunnel.terminate()
        try:
            _, err = tunnel.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            # ssh acts on SIGTERM only between its own steps; on a busy machine that can wait.
            tunnel.kill()
            _, err = tunnel.communicate(timeout=10)
    return got, err.decode()


def test_a_forward_works_only_where_the_role_allows_it(gateway_world: GatewayWorld, echo_server: int) -> None:
    got, _ = forwarded(gateway_world, "web-2", echo_server)
    assert got == b"HELLO THROUGH THE TUNNEL"
    refused, _ = forwarded(gateway_world, "deploy@web-1", echo_server)
    assert refused == b""
    gateway_world.wait_for(
        "the refused forward on record",
        lambda: [
            e
            for e in gateway_world.audit(action="access.refused", actor="alice")
            if e["details"]["reason"] == "port forwarding is not allowed by role shell"
        ],
    )


def read_until(fd: int, wanted: bytes, timeout: float = 15.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"never saw {wanted!r} in {seen[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_an_interactive_shell_is_recorded_as_a_cast_that_replays_what_was_typed_and_shown(
    gateway_world: GatewayWorld, tmp_path: Path
) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real ssh client on a real terminal
        argv = gateway_world.ssh_argv("alice", "deploy@web-1", extra=["-tt"])
        os.execvp(argv[0], argv)  # noqa: S606 - the real ssh client, on a real terminal
    try:
        read_until(fd, b"$ ")
        os.write(fd, b"echo gateway-$((6*7))\n")
        read_until(fd, b"gateway-42")
        os.write(fd, b"exit 4\n")
        read_until(fd, b"closed")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 4
    grant = gateway_world.grants["alice"]
    session = gateway_world.wait_for(
        "the session's end on record",
        lambda: [s for s in gateway_world.sessions() if s["grant"] == grant and s["state"] == "ended"
                 and any(r["kind"] == "shell" for r in s["recordings"])],
    )[0]  # fmt: skip
    out = tmp_path / "shell.cast"
    exported = gateway_world.jitgate("sessions", "export", session["id"], "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    import json

    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2
    events = [json.loads(line) for line in lines[1:]]
    typed = "".join(e[2] for e in events if e[1] == "i")
    shown = "".join(e[2] for e in events if e[1] == "o")
    assert "echo gateway-$((6*7))" in typed
    assert "gateway-42" in shown
    times = [e[0] for e in events]
    assert times == sorted(times)
    played = gateway_world.jitgate("sessions", "play", session["id"], "--speed", "1000")
    assert played.returncode == 0, played.stderr
    assert "gateway-42" in played.stdout


def test_a_target_without_a_host_certificate_from_the_host_ca_is_never_reached(
    gateway_world: GatewayWorld,
) -> None:
    done = gateway_world.ssh("alice", "deploy@web-3", "echo reached")
    assert done.returncode != 0
    assert done.stdout == b""
    assert "did not show a host certificate from jitgate's host CA" in one_line(done)


def test_jitgate_ssh_via_the_gateway_needs_no_registered_key(gateway_world: GatewayWorld) -> None:
    env = {**os.environ, "JITGATE_URL": gateway_world.url, "JITGATE_TOKEN": gateway_world.tokens["alice"]}
    runtime = gateway_world.tmp / "run-via"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env["XDG_RUNTIME_DIR"] = str(runtime)
    from gatewayworld import JITGATE

    done = subprocess.run(
        [*JITGATE, "ssh", "web-1", "--via-gateway", "--login", "ops", "--", "id", "-un"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "ops\n"), done.stderr
    assert not any(runtime.rglob("*")) or all(p.is_dir() for p in runtime.rglob("*"))
    keys = gateway_world.http("GET", "/api/v1/keys", "alice").json()
    assert not [k for k in keys if k["ephemeral"] and k["state"] == "active"]


def test_plain_ssh_scp_and_sftp_go_through_the_gateway_with_ssh_config(
    gateway_world: GatewayWorld, tmp_path: Path
) -> None:
    from gatewayworld import JITGATE

    config_home = tmp_path / "cfg"
    env = {**os.environ, "JITGATE_URL": gateway_world.url, "JITGATE_TOKEN": gateway_world.tokens["alice"],
           "XDG_CONFIG_HOME": str(config_home)}  # fmt: skip
    printed = subprocess.run(
        [*JITGATE, "ssh-config", "--via-gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert printed.returncode == 0, printed.stderr
    config = tmp_path / "ssh_config"
    key = gateway_world.keys["alice"]
    config.write_text(
        printed.stdout + f"\nHost *\n    IdentityFile {key}\n    IdentitiesOnly yes\n    BatchMode yes\n"
    )
    done = subprocess.run(
        ["ssh", "-F", str(config), "web-1", "id -un"], capture_output=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (0, b"deploy\n"), done.stderr
    local = tmp_path / "f.txt"
    local.write_text("through the config\n")
    copied = subprocess.run(
        ["scp", "-F", str(config), str(local), "web-1:/tmp/jg-gw-config.txt"],
        capture_output=True,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    back = subprocess.run(
        ["ssh", "-F", str(config), "web-1", "cat /tmp/jg-gw-config.txt; rm /tmp/jg-gw-config.txt"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert back.stdout == b"through the config\n"
