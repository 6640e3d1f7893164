"""Going through the broker's SSH gateway: ``jitgate ssh --via-gateway`` and ``ssh-config --via-gateway``.

Through the gateway the client holds no certificate at all: it signs in to the gateway with a key
the broker knows (registered with ``jitgate keys add``, or made for one connection), and the
gateway mints the onward certificate itself, under the user's grant, and relays the session.
The user name sent to the gateway names the target: ``LOGIN@TARGET``, or just ``TARGET`` when the
role offers one login there.

``jitgate ssh TARGET --via-gateway`` makes an Ed25519 key in memory, registers it as an ephemeral
key (it ends within minutes by itself) and runs the system's ``ssh`` with it from the same private
directory as the direct ``jitgate ssh``, checking the gateway's host key against the broker's host
CA only. Afterwards the key is removed from the broker (best effort) and its file overwritten,
however ``ssh`` ended.

``jitgate ssh-config --via-gateway`` prints one ``Host`` stanza per target pointing plain ``ssh``
at the gateway, and writes the gateway's ``known_hosts`` lines next to the login file. The user
signs in with a key they registered. Only the first login of a target goes into its stanza
(``User``); the others are listed in a comment, used as ``ssh -l LOGIN@TARGET TARGET``: an alias
``Host LOGIN@TARGET`` cannot work, since ``ssh`` takes what is before the last ``@`` as the user.

Standard library only up front, like ``cli/sshsession.py``: this runs on the ``jitgate ssh`` fast path.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

from jitgate import errors
from jitgate.cli.config import login_file, resolve
from jitgate.cli.signals import ended_by_signals, run_child
from jitgate.cli.sshsession import (
    SSH,
    KeyPair,
    broker_json,
    checked,
    one_line,
    private_directory,
    write_private,
)
from jitgate.domain import sshnames

if TYPE_CHECKING:
    from jitgate.cli.ssh import ConfigTarget

NOT_ENABLED = "the broker's SSH gateway is not enabled; connect directly with `jitgate ssh TARGET`"
_KEY_ID = re.compile(r"k-[0-9a-f]{1,30}")
REMOVE_TIMEOUT = 5.0
"""Seconds to wait for the broker to remove the ephemeral key: it ends by itself anyway."""


class Gateway(NamedTuple):
    """``GET /api/v1/gateway``, checked: nothing the broker sends reaches ssh or a file unchecked."""

    host: str
    port: int
    names: list[str]
    known_hosts: list[str]

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Gateway:
        if not data.get("enabled"):
            raise errors.Conflict(NOT_ENABLED)
        lines = data.get("known_hosts")
        if not isinstance(lines, list) or not lines:
            raise errors.InvalidInput("the broker sent no known_hosts lines for its SSH gateway")
        names = data.get("names")
        return cls(
            host=checked(sshnames.check_address, data.get("host"), "gateway host"),
            port=checked(sshnames.check_port, data.get("port"), "gateway port"),
            names=[checked(sshnames.check_address, n, "gateway name") for n in names or []],
            known_hosts=[one_line(line, "a known_hosts line") for line in lines],
        )


def gateway_user(target: str, login: str | None) -> str:
    """The user name that asks the gateway for ``target`` (as ``login``, or the role's only login)."""
    try:
        name = sshnames.check_target_name(target)
        return name if login is None else f"{sshnames.check_login(login)}{sshnames.SEPARATOR}{name}"
    except ValueError as exc:
        raise errors.InvalidInput(str(exc)) from None


def gateway_ssh_argv(
    gateway: Gateway,
    user: str,
    *,
    key_file: Path,
    known_hosts: Path,
    options: Sequence[str] = (),
    command: Sequence[str] = (),
) -> list[str]:
    """``ssh`` to the gateway as ``user`` with only ``key_file``, trusting only ``known_hosts``.

    No ``CertificateFile``: the gateway takes the registered key itself, and a ``CertificateFile``
    of the user's own configuration cannot be taken away (the option accumulates) — an unrelated
    certificate offered first only costs one refused attempt.
    """
    # ssh keeps the first value it sees for an option: ours come first and cannot be overridden.
    argv = [
        SSH,
        "-i", str(key_file),
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
    ]  # fmt: skip
    for option in options:
        argv += ["-o", option]
    argv += ["-p", str(gateway.port), "--", f"{user}@{gateway.host}", *command]
    return argv


def connect_via_gateway(
    target: str,
    *,
    command: Sequence[str] = (),
    login: str | None = None,
    options: Sequence[str] = (),
    url: str | None = None,
    token: str | None = None,
) -> int:
    """Connect to ``target`` through the gateway with a key made now; returns ssh's exit status.

    SIGINT, SIGTERM or SIGHUP at any moment end the session with 128+N, the key file removed.
    """
    return ended_by_signals(lambda: _session(target, command, login, options, url, token))


def _session(
    target: str,
    command: Sequence[str],
    login: str | None,
    options: Sequence[str],
    url: str | None,
    token: str | None,
) -> int:
    base_url, bearer = resolve(url, token)
    user = gateway_user(target, login)
    gateway = Gateway.from_api(broker_json(base_url, bearer, "GET", "/api/v1/gateway"))
    key = KeyPair.generate()
    with private_directory() as directory:
        key_file, hosts = directory / "id_ed25519", directory / "gateway.known_hosts"
        write_private(key_file, key.private_bytes())
        write_private(hosts, "".join(f"{line}\n" for line in gateway.known_hosts).encode())
        made = broker_json(base_url, bearer, "POST", "/api/v1/gateway/keys", {"public_key": key.public_line})
        key_id = str(made.get("id")) if isinstance(made, dict) else ""
        try:
            if not _KEY_ID.fullmatch(key_id):
                raise errors.InvalidInput("the broker sent a bad key id")
            argv = gateway_ssh_argv(
                gateway, user, key_file=key_file, known_hosts=hosts, options=options, command=command
            )
            return run_child(argv)
        finally:
            if _KEY_ID.fullmatch(key_id):
                with contextlib.suppress(errors.JitgateError):
                    path = f"/api/v1/keys/{quote(key_id, safe='')}"
                    broker_json(base_url, bearer, "DELETE", path, timeout=REMOVE_TIMEOUT)


# -- ssh-config --via-gateway ----------------------------------------------------------------------


def known_hosts_file() -> Path:
    """Where ``ssh-config --via-gateway`` keeps the gateway's host CA lines: next to the login file."""
    return login_file().parent / "gateway.known_hosts"


def write_known_hosts(path: Path, lines: Sequence[str]) -> Path:
    """Replace ``path`` (0600, in a 0700 directory) with ``lines``, whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = path.with_name(f".{path.name}.{os.urandom(4).hex()}")
    try:
        write_private(staging, "".join(f"{line}\n" for line in lines).encode())
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def gateway_stanza(target: ConfigTarget, login: str, gateway: Gateway, known_hosts: Path) -> str:
    """``Host TARGET`` through the gateway as ``LOGIN@TARGET``; other logins named in a comment."""
    from jitgate.cli.ssh import config_word  # the full CLI is loaded by ssh-config anyway

    name = checked(sshnames.check_target_name, target.name, "target name")
    login = checked(sshnames.check_login, login, "login")
    others = [checked(sshnames.check_login, x, "login") for x in target.logins if x != login]
    lines = [f"# {name} through the jitgate SSH gateway as {login}"]
    lines += [f"#   as {other}: ssh -l {other}@{name} {name}" for other in others]
    lines += [
        f"Host {config_word(name)}",
        f"    HostName {config_word(gateway.host)}",
        f"    Port {gateway.port}",
        f"    User {config_word(f'{login}@{name}')}",
        f"    UserKnownHostsFile {config_word(str(known_hosts))}",
        "    GlobalKnownHostsFile /dev/null",
        "    StrictHostKeyChecking yes",
        "",
    ]
    return "\n".join(lines)


def gateway_config(gateway: Gateway, targets: Sequence[tuple[ConfigTarget, str]], url: str) -> str:
    """The whole ``ssh-config --via-gateway`` output; writes the known_hosts file it refers to."""
    hosts = write_known_hosts(known_hosts_file(), gateway.known_hosts)
    header = [
        f"# jitgate ssh-config --via-gateway for {url}: Include this before any `Host *` block.",
        "# Sign in with a key you registered first: jitgate keys add ~/.ssh/id_ed25519.pub",
        f"# The gateway's host CA is trusted from {hosts}; run this again after the broker rotates it.",
        "",
    ]
    return "\n".join(header) + "\n".join(gateway_stanza(t, login, gateway, hosts) for t, login in targets)
