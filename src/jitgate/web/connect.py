"""How to connect with a grant: the exact ``jitgate`` commands for each of its targets.

Derived from the policy (each target's kind, the role's ssh logins) and whether the broker runs
its SSH gateway; the commands are the CLI's own (``jitgate ssh``, ``jitgate db``).
"""

from __future__ import annotations

from dataclasses import dataclass

from jitgate.policy.model import Policy


@dataclass(frozen=True)
class Command:
    target: str
    line: str
    what: str


def connect_commands(policy: Policy, role_name: str, targets: list[str], *, gateway: bool) -> list[Command]:
    """One command per way in: each ssh target directly (and through the gateway when it runs),
    once per extra login; each database target with a fresh login."""
    role = policy.role(role_name)
    out: list[Command] = []
    for name in targets:
        target = policy.target(name)
        if target is None or role is None:
            continue
        if target.kind == "ssh" and role.ssh is not None:
            first, *others = role.ssh.logins
            out.append(Command(name, f"jitgate ssh {name}", f"ssh as {first} with a certificate minted now"))
            out += [
                Command(name, f"jitgate ssh {name} --login {login}", f"ssh as {login}") for login in others
            ]
            if gateway:
                out.append(
                    Command(name, f"jitgate ssh {name} --via-gateway", f"ssh as {first} through the gateway")
                )
        elif target.kind == "postgres":
            out.append(Command(name, f"jitgate db {name} --exec", "psql with a fresh login"))
        elif target.kind == "mariadb":
            out.append(
                Command(name, f"jitgate db {name}", "a fresh login and its DSN for the mariadb client")
            )
    return out
