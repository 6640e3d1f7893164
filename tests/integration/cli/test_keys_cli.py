"""The real ``jitgate`` command against a real ``jitgate server``: ``keys add|list|remove`` with their
exit codes, and the client side of the SSH gateway — ``ssh-config --via-gateway`` read back by the
real ``ssh -G``, ``jitgate ssh --via-gateway`` up to the moment ``ssh`` connects."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jitgate import errors
from jitgate.cli.gatewayssh import Gateway, gateway_ssh_argv, gateway_stanza, gateway_user
from jitgate.cli.ssh import ConfigTarget
from support.broker_process import JITGATE, Process, broker, free_port
from support.sshkeys import keygen, public_line

GATEWAY_LINE = (
    "@cert-authority [gw.example.org]:2222 "
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
)


@dataclass
class Cli:
    broker: Process
    home: Path
    gateway_port: int | None = None

    def run(
        self, *args: str, user: str | None = "alice", stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "JITGATE_URL": self.broker.url,
            "XDG_CONFIG_HOME": str(self.home / "cfg"),
            "XDG_RUNTIME_DIR": str(self.home / "run"),
        }
        env.pop("JITGATE_TOKEN", None)
        if user is not None:
            env["JITGATE_TOKEN"] = self.broker.token if user == "alice" else self.broker.admin_token
        return subprocess.run(
            [*JITGATE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )

    def json(self, *args: str, user: str = "alice") -> object:
        done = self.run(*args, "--json", user=user)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def _cli(tmp: Path, env: dict[str, str], gateway_port: int | None = None) -> Iterator[Cli]:
    (tmp / "run").mkdir(mode=0o700)
    with broker(tmp, env) as process:
        yield Cli(process, tmp, gateway_port)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """A broker without the SSH gateway."""
    yield from _cli(tmp_path_factory.mktemp("plain"), {})


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """A broker whose gateway is announced at an address where nothing listens (yet)."""
    port = free_port()
    env = {
        "JITGATE_GATEWAY_LISTEN": f"127.0.0.1:{free_port()}",
        "JITGATE_GATEWAY_PUBLIC_ADDRESS": f"127.0.0.1:{port}",
    }
    yield from _cli(tmp_path_factory.mktemp("gated"), env, port)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_keys_are_added_listed_and_removed(plain: Cli, tmp_path: Path) -> None:
    private = keygen(tmp_path, "id_ed25519", "-t", "ed25519", comment="alice@laptop")
    added = plain.json("keys", "add", f"{private}.pub", "--for", "30d")
    assert isinstance(added, dict)
    assert (added["user"], added["comment"], added["ephemeral"]) == ("alice", "alice@laptop", False)
    listed = plain.run("keys", "list")
    assert listed.returncode == 0
    assert added["id"] in listed.stdout
    assert added["fingerprint"] in listed.stdout
    everyone = plain.json("keys", "list", "--all", user="admin")
    assert [k["id"] for k in everyone] == [added["id"]]  # type: ignore[attr-defined]
    removed = plain.run("keys", "remove", added["id"])
    assert removed.returncode == 0
    assert f"key {added['id']} of alice removed" in removed.stdout
    assert plain.json("keys", "list") == []
    assert "no key" in one_error_line(gone := plain.run("keys", "remove", added["id"]))
    assert gone.returncode == 6


def test_keys_add_with_a_comment_of_your_own_or_from_standard_input(plain: Cli, tmp_path: Path) -> None:
    private = keygen(tmp_path, "id", "-t", "ecdsa")
    added = plain.json("keys", "add", f"{private}.pub", "--comment", "work laptop")
    assert isinstance(added, dict)
    assert added["comment"] == "work laptop"
    assert plain.run("keys", "remove", added["id"]).returncode == 0
    piped = plain.run("keys", "add", "-", stdin=public_line(tmp_path, "piped", "-t", "ed25519", comment="ci"))
    assert piped.returncode == 0, piped.stderr
    assert "registered until" in piped.stdout
    [key] = plain.json("keys", "list")  # type: ignore[misc]
    assert key["comment"] == "ci"
    assert plain.run("keys", "remove", key["id"]).returncode == 0


def test_refusals_are_one_line_with_their_exit_codes(plain: Cli, tmp_path: Path) -> None:
    private = keygen(tmp_path, "id", "-t", "ed25519")
    pub = f"{private}.pub"
    mine = plain.json("keys", "add", pub)
    assert isinstance(mine, dict)
    again = plain.run("keys", "add", pub, user="admin")
    assert (again.returncode, one_error_line(again)) == (7, "error: this key is already registered")
    short = tmp_path / "short.pub"
    short.write_text(public_line(tmp_path, "short", "-t", "rsa", "-b", "1024") + "\n")
    weak = plain.run("keys", "add", str(short))
    assert weak.returncode == 3
    assert "at least 2048" in one_error_line(weak)
    leaked = plain.run("keys", "add", str(private))
    assert leaked.returncode == 3
    assert "holds a private key" in one_error_line(leaked)
    assert plain.run("keys", "add", str(tmp_path / "missing.pub")).returncode == 3
    assert plain.run("keys", "add", pub, "--for", "400d").returncode == 3
    assert plain.run("keys", "list", "--all").returncode == 5
    assert plain.run("keys", "list", user=None).returncode == 4
    assert plain.run("keys", "remove", mine["id"], user="admin").returncode == 0


def test_ssh_via_gateway_refuses_in_one_line_when_the_gateway_is_off(plain: Cli) -> None:
    done = plain.run("ssh", "stage-1", "--via-gateway", "--", "true")
    assert done.returncode == 7
    assert one_error_line(done) == (
        "error: the broker's SSH gateway is not enabled; connect directly with `jitgate ssh TARGET`"
    )
    config = plain.run("ssh-config", "--via-gateway")
    assert config.returncode == 7
    assert "not enabled" in one_error_line(config)
    assert config.stdout == ""
    mixed = plain.run("ssh", "stage-1", "--via-gateway", "--unsafe-accept-unknown-host")
    assert mixed.returncode == 3
    assert "does not apply with --via-gateway" in one_error_line(mixed)


def test_ssh_via_gateway_registers_a_key_for_the_connection_and_removes_it_after(gated: Cli) -> None:
    done = gated.run("ssh", "stage-1", "--via-gateway", "-o", "ConnectTimeout=5", "--", "true")
    assert done.returncode == 255, done.stderr  # ssh itself: nothing listens at the gateway address yet
    assert gated.json("keys", "list") == []
    assert list((gated.home / "run" / "jitgate").iterdir()) == []  # the key file is gone too
    events = gated.json("audit", "--user", "alice", user="admin")
    assert isinstance(events, list)
    [added] = [e for e in events if e["action"] == "key.added"]
    [removed] = [e for e in events if e["action"] == "key.removed"]
    assert added["details"]["ephemeral"] is True
    assert removed["details"]["key_id"] == added["details"]["key_id"]


def ssh_g_lines(config: Path, *args: str) -> list[tuple[str, str]]:
    """What the real ssh client makes of ``config`` for ``args`` (``ssh -G``), option by option."""
    done = subprocess.run(
        ["ssh", "-G", "-F", str(config), *args], capture_output=True, text=True, check=True, timeout=30
    )
    return [(name, value) for name, _, value in (line.partition(" ") for line in done.stdout.splitlines())]


def ssh_g(config: Path, *args: str) -> dict[str, str]:
    return dict(ssh_g_lines(config, *args))


def test_ssh_config_via_gateway_points_plain_ssh_at_the_gateway(gated: Cli, tmp_path: Path) -> None:
    done = gated.run("ssh-config", "--via-gateway")
    assert done.returncode == 0, done.stderr
    assert "jitgate keys add ~/.ssh/id_ed25519.pub" in done.stdout
    config = tmp_path / "config"
    config.write_text(done.stdout)
    seen = ssh_g(config, "stage-1")
    hosts = gated.home / "cfg" / "jitgate" / "gateway.known_hosts"
    assert (seen["hostname"], seen["port"]) == ("127.0.0.1", str(gated.gateway_port))
    assert seen["user"] == "deploy@stage-1"
    assert seen["userknownhostsfile"] == str(hosts)
    assert seen["globalknownhostsfile"] == "/dev/null"
    assert seen["stricthostkeychecking"] == "true"
    assert stat.S_IMODE(hosts.stat().st_mode) == 0o600
    lines = hosts.read_text().splitlines()
    assert lines
    assert all(
        line.startswith(f"@cert-authority [127.0.0.1]:{gated.gateway_port} ssh-ed25519 ") for line in lines
    )


# -- the pieces, as functions ----------------------------------------------------------------------

GATEWAY = Gateway(host="gw.example.org", port=2222, names=["gw.example.org"], known_hosts=[GATEWAY_LINE])


def test_the_gateway_user_names_the_target_and_the_login_if_one_is_chosen() -> None:
    assert gateway_user("web-1", None) == "web-1"
    assert gateway_user("web-1", "deploy") == "deploy@web-1"
    for target, login in (("web-1", "a@b"), ("Web 1", None), ("web-1", "-oProxyCommand=x")):
        with pytest.raises(errors.InvalidInput):
            gateway_user(target, login)


def test_ssh_is_run_with_only_the_session_key_and_the_gateways_host_ca(tmp_path: Path) -> None:
    key, hosts = keygen(tmp_path, "id_ed25519", "-t", "ed25519"), tmp_path / "gateway.known_hosts"
    argv = gateway_ssh_argv(
        GATEWAY,
        "deploy@web-1",
        key_file=key,
        known_hosts=hosts,
        options=["ServerAliveInterval=5"],
        command=["uptime"],
    )
    assert argv[0] == "ssh"
    assert argv[-3:] == ["--", "deploy@web-1@gw.example.org", "uptime"]
    # The real client, asked what it would do (``-G``) with the same arguments and no config file.
    options = ssh_g_lines(Path("/dev/null"), *argv[1:-1])
    seen = dict(options)
    assert (seen["user"], seen["hostname"], seen["port"]) == ("deploy@web-1", "gw.example.org", "2222")
    assert [value for name, value in options if name == "identityfile"] == [str(key)]
    assert (seen["identitiesonly"], seen["identityagent"]) == ("yes", "none")
    assert seen["userknownhostsfile"] == str(hosts)
    assert (seen["globalknownhostsfile"], seen["stricthostkeychecking"]) == ("/dev/null", "true")
    assert seen["serveraliveinterval"] == "5"


def test_a_stanza_uses_the_first_login_and_names_the_others(tmp_path: Path) -> None:
    target = ConfigTarget(name="web-1", address="10.0.0.5", port=22, logins=["deploy", "root"])
    hosts = tmp_path / "with space" / "gateway.known_hosts"
    config = tmp_path / "config"
    config.write_text(gateway_stanza(target, "deploy", GATEWAY, hosts))
    assert "ssh -l root@web-1 web-1" in config.read_text()
    seen = ssh_g(config, "web-1")
    assert (seen["user"], seen["hostname"], seen["port"]) == ("deploy@web-1", "gw.example.org", "2222")
    assert seen["userknownhostsfile"] == str(hosts)
    assert ssh_g(config, "-l", "root@web-1", "web-1")["user"] == "root@web-1"


@pytest.mark.parametrize(
    "answer",
    [
        {"enabled": True, "host": "gw\nProxyCommand evil", "port": 2222, "known_hosts": [GATEWAY_LINE]},
        {"enabled": True, "host": "gw", "port": "22; rm", "known_hosts": [GATEWAY_LINE]},
        {"enabled": True, "host": "gw", "port": 2222, "known_hosts": [GATEWAY_LINE + "\n* ssh-ed25519 AAAA"]},
        {"enabled": True, "host": "gw", "port": 2222, "known_hosts": []},
    ],
    ids=["newline-in-host", "bad-port", "newline-in-known-hosts", "no-known-hosts"],
)
def test_nothing_the_broker_sends_reaches_ssh_unchecked(answer: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidInput):
        Gateway.from_api(answer)
