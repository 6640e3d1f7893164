"""Commands about targets themselves: ``jitgate target sshd-config TARGET``.

Offline, from the policy file: what a target's sshd needs is decided by the policy alone (which
logins the roles grant there), and the host being set up may not reach the broker. The CA line
comes from ``jitgate ca show`` and the revocation list from ``jitgate ca krl``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jitgate.cli.common import JsonOpt, offline
from jitgate.cli.output import emit_json

target_app = typer.Typer(help="What a target needs to trust jitgate.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(target_app, name="target")

    @target_app.command("sshd-config")
    def sshd_config(
        target: Annotated[str, typer.Argument(metavar="TARGET", help="The target's name in the policy")],
        policy: Annotated[
            Path,
            typer.Option("--policy", envvar="JITGATE_POLICY_FILE", metavar="FILE", help="The policy file"),
        ] = Path("policy.yaml"),
        directory: Annotated[
            str, typer.Option("--dir", metavar="DIR", help="Where jitgate's files live on the target")
        ] = "/etc/ssh/jitgate",
        as_json: JsonOpt = False,
    ) -> None:
        """The sshd_config lines and principals files that let in only certificates for TARGET."""
        from jitgate.policy.loader import load_policy
        from jitgate.providers.ssh.sshd import sshd_setup

        with offline():
            loaded = load_policy(policy)
            setup = sshd_setup(loaded, target, directory)
        if as_json:
            where = loaded.target(target)
            emit_json(
                {
                    "target": setup.target,
                    "address": where.address if where else None,
                    "port": where.effective_port if where else None,
                    "sshd_config": list(setup.config_lines),
                    "principals": {login: list(lines) for login, lines in setup.principals.items()},
                    "files": setup.files,
                }
            )
            return
        base = directory.rstrip("/") or "/"
        print(f"# sshd_config of {target}, before any Match block:")
        print("\n".join(setup.config_lines))
        print(f"# {base}/user_ca.pub: the lines of `jitgate ca show`")
        print(f"# {base}/revoked.krl: kept current with `jitgate ca krl --out {base}/revoked.krl`")
        if not setup.files:
            print(f"# no role grants a login on {target}: no principals files, no certificate logins")
        for path, content in setup.files.items():
            print(f"# {path} (owned by root, mode 0644):")
            print(content, end="")
