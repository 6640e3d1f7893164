"""What ``jitgate demo`` prints on start: the exact commands to try every delivery on this machine.

Written from the demo's own facts (its data directory, address, policy, environment and whether
it runs as root), so every line can be pasted as it is: the requests and approvals, ``jitgate
ssh`` to a throwaway sshd started by ``scripts/demo-sshd``, ``jitgate db`` against a local
PostgreSQL once the broker has its admin DSN, and the SSH gateway.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jitgate.domain import sshnames
from jitgate.policy.model import Policy, Target

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_DATA_DIR = Path("demo-data")
GATEWAY_EXAMPLE = "127.0.0.1:2200"


def demo_policy_text(packaged: str, user: str | None) -> str:
    """The demo policy for this machine. Run as a normal user, its ssh roles also grant that
    user's own login: an sshd that is not root (``scripts/demo-sshd``) lets in only its own user."""
    if user in {None, "root", "deploy"}:
        return packaged
    try:
        login = sshnames.check_login(str(user))
    except ValueError:
        return packaged
    return packaged.replace("logins: [deploy]", f"logins: [deploy, {login}]")


@dataclass(frozen=True, slots=True)
class DemoPlace:
    """Where and how this demo runs."""

    data_dir: Path
    listen: str
    gateway_listen: str | None
    cwd: Path
    activate: Path | None  # the virtualenv's activate script, when jitgate is not on PATH
    sshd_script: Path | None
    user: str
    root: bool

    @classmethod
    def here(cls, data_dir: Path, listen: str, gateway_listen: str | None) -> DemoPlace:
        """This process's place: its user, its virtualenv, the source tree's demo-sshd."""
        import jitgate

        activate = None
        if sys.prefix != sys.base_prefix:
            venv_bin = Path(sys.prefix) / "bin"
            on_path = shutil.which("jitgate")
            if on_path is None or Path(on_path).resolve() != (venv_bin / "jitgate").resolve():
                activate = venv_bin / "activate"
        script = Path(jitgate.__file__).resolve().parents[2] / "scripts" / "demo-sshd"
        return cls(
            data_dir=data_dir,
            listen=listen,
            gateway_listen=gateway_listen,
            cwd=Path.cwd(),
            activate=activate,
            sshd_script=script if script.is_file() else None,
            user=pwd.getpwuid(os.geteuid()).pw_name,
            root=os.geteuid() == 0,
        )


def walkthrough(policy: Policy, place: DemoPlace, environ: Mapping[str, str]) -> str:
    """The text ``jitgate demo`` prints before it starts serving."""
    url = f"http://{place.listen}"
    data = _shown(place.data_dir, place.cwd)
    tokens = f"{data}/demo-tokens.json"
    lines = [
        f"jitgate demo: a broker at {url} with the policy {data}/demo-policy.yaml",
        "Users: alice (engineers), bob (sre-leads: approves prod-shell), carol (engineers, on call:",
        f"approved at once), dave (analysts), admin. Their tokens are in {tokens}.",
        "",
        "1. Ask, approve and look, in another shell:",
        f"  cd {shlex.quote(str(place.cwd))}",
    ]
    if place.activate is not None:
        lines.append(f"  . {_shown(place.activate, place.cwd)}")
    lines += [
        f"  export JITGATE_URL={url}",
        "  tok() { python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])' "
        f'{shlex.quote(tokens)} "$1"; }}',
        "  JITGATE_TOKEN=$(tok alice) jitgate roles",
        "  JITGATE_TOKEN=$(tok alice) jitgate request prod-shell --reason INC-42 --for 30m   # bob decides",
        "  JITGATE_TOKEN=$(tok bob) jitgate requests --reviewable",
        "  JITGATE_TOKEN=$(tok bob) jitgate approve REQUEST-ID --comment ok   # the r-... id shown above",
        "  JITGATE_TOKEN=$(tok alice) jitgate grants",
        "  JITGATE_TOKEN=$(tok admin) jitgate audit",
        f"  jitgate audit verify --data-dir {shlex.quote(data)}",
    ]
    ssh_target = next((t for t in policy.targets if t.kind == "ssh"), None)
    if ssh_target is not None:
        lines += ["", *_ssh_lines(ssh_target, place, url, data)]
    postgres = next((t for t in policy.targets if t.kind == "postgres" and t.admin_dsn_env), None)
    if postgres is not None:
        lines += ["", *_database_lines(postgres, policy, place, environ)]
    lines += ["", *_gateway_lines(ssh_target, place), "", f"Console: {url}/ui/   API: {url}/docs"]
    return "\n".join(lines)


def _ssh_lines(target: Target, place: DemoPlace, url: str, data: str) -> list[str]:
    where = f"{target.address}:{target.effective_port}"
    who = "deploy" if place.root else place.user
    script = _shown(place.sshd_script, place.cwd) if place.sshd_script else "scripts/demo-sshd"
    start = f"{script} {shlex.quote(data)} {target.name}"
    if place.listen != DEFAULT_LISTEN:
        start = f"JITGATE_URL={url} {start}"
    login = "" if place.root else f" -l {place.user}"
    return [
        f"2. SSH: {target.name} is {where}. In a third shell, start a throwaway sshd there that trusts",
        f"   this demo's CA and lets in {who} (it runs in the foreground; Ctrl-C removes it):",
        f"  cd {shlex.quote(str(place.cwd))} && {start}",
        "   then, in the second shell, once bob approved alice's request:",
        f"  JITGATE_TOKEN=$(tok alice) jitgate ssh {target.name}{login} -- id",
    ]


def _database_lines(
    target: Target, policy: Policy, place: DemoPlace, environ: Mapping[str, str]
) -> list[str]:
    variable = str(target.admin_dsn_env)
    role = next((r.name for r in policy.roles if r.postgres is not None and r.targets.selects(target)), None)
    head = f"3. Database: {target.name} is PostgreSQL, reached with the admin DSN in ${variable}."
    if environ.get(variable):
        return [
            head,
            f"  JITGATE_TOKEN=$(tok dave) jitgate request {role or 'ROLE'} --reason report --for 15m",
            f"  JITGATE_TOKEN=$(tok dave) jitgate db {target.name} --exec -- -c 'select current_user'",
        ]
    restart = "make run" if _is_default(place) else _demo_command(place)
    return [
        head,
        "   It is not set: stop this demo (Ctrl-C) and start it again with an admin of your PostgreSQL",
        "   (a superuser, or a role with CREATEROLE); for a local one that trusts local connections:",
        f"  {variable}={LOCAL_POSTGRES} {restart}",
        "   The same data directory and tokens are used again; this text then shows the db commands.",
    ]


def _gateway_lines(target: Target | None, place: DemoPlace) -> list[str]:
    if place.gateway_listen is None:
        flagged = _demo_command(place, gateway=GATEWAY_EXAMPLE)
        return [
            "4. The SSH gateway (sessions recorded, no credential on your machine) is off; restart with",
            f"  {flagged}",
        ]
    host, _, port = place.gateway_listen.rpartition(":")
    name = target.name if target is not None else "TARGET"
    login = "deploy" if place.root else place.user
    return [
        f"4. The SSH gateway listens on {place.gateway_listen}; with a grant for {name}:",
        f"  JITGATE_TOKEN=$(tok alice) jitgate ssh {name} --via-gateway -- id",
        "  JITGATE_TOKEN=$(tok alice) jitgate keys add ~/.ssh/id_ed25519.pub   # then plain ssh:",
        f"  ssh -p {port} {login}@{name}@{host or '127.0.0.1'}",
    ]


def _is_default(place: DemoPlace) -> bool:
    """Started as ``make run`` starts it: default data directory and address, no gateway."""
    default_data = _shown(place.data_dir, place.cwd) == str(DEFAULT_DATA_DIR)
    return default_data and place.listen == DEFAULT_LISTEN and not place.gateway_listen


def _demo_command(place: DemoPlace, *, gateway: str | None = None) -> str:
    program = "jitgate" if place.activate is None else _shown(place.activate.parent / "jitgate", place.cwd)
    words = [program, "demo"]
    if _shown(place.data_dir, place.cwd) != str(DEFAULT_DATA_DIR):
        words += ["--data-dir", _shown(place.data_dir, place.cwd)]
    if place.listen != DEFAULT_LISTEN:
        words += ["--listen", place.listen]
    if gateway or place.gateway_listen:
        words += ["--gateway-listen", str(gateway or place.gateway_listen)]
    return shlex.join(words)


def _shown(path: Path, cwd: Path) -> str:
    """``path`` as short as it can be said from ``cwd`` (a relative path already is)."""
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)
