"""A certificate minted for one target opens that target and no other, on two real sshds.

``web-1`` needs an approval, ``stage-1`` is auto-approved; both offer the login ``deploy`` and trust
the same user CA. Each sshd is configured with exactly the lines and principals files that
``jitgate target sshd-config`` prints for it, and the certificates come from a real broker process
through the real CLI.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sshd import Sshd, SshdFactory, empty_krl, principals_directory, run_ssh

from support.broker import JITGATE, Server

pytestmark = pytest.mark.sshd

POLICY = """
targets:
  - {{name: web-1, kind: ssh, address: 127.0.0.1, port: {web}}}
  - {{name: stage-1, kind: ssh, address: 127.0.0.1, port: {stage}}}
roles:
  - name: prod-shell
    targets: {{names: [web-1]}}
    ssh: {{logins: [deploy]}}
    max_duration: 1h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
  - name: stage-shell
    targets: {{names: [stage-1]}}
    ssh: {{logins: [deploy]}}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
"""


def jitgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JITGATE, *args], capture_output=True, text=True, timeout=60, check=False, env=env)


def ok(*args: str) -> str:
    done = jitgate(*args)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


@dataclass
class Site:
    tmp: Path
    url: str
    tokens: dict[str, str]
    sshds: dict[str, Sshd]

    def cli(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        return jitgate(*args, "--url", self.url, "--token", self.tokens[user])

    def certificate(self, user: str, target: str) -> tuple[Path, Path]:
        """A key of the user's own and a certificate for it minted for ``target``."""
        key = self.tmp / f"{user}-{target}"
        key.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        cert = self.tmp / f"{user}-{target}-cert.pub"
        done = self.cli(user, "ssh-cert", target, "--public-key", f"{key}.pub", "--out", str(cert))
        assert done.returncode == 0, done.stderr
        return key, cert


def configure_sshd(factory: SshdFactory, policy: Path, target: str, user_ca: str, tmp: Path) -> Sshd:
    """An sshd set up exactly as ``jitgate target sshd-config TARGET`` says."""
    directory = principals_directory()  # readable by the logins, like /etc/ssh/jitgate
    shown = json.loads(
        ok("target", "sshd-config", target, "--policy", str(policy), "--dir", str(directory), "--json")
    )
    for path, content in shown["files"].items():
        written = Path(path)
        written.parent.mkdir(mode=0o755, exist_ok=True)
        written.write_text(content)
        written.chmod(0o644)
    (directory / "user_ca.pub").write_text(user_ca)
    (directory / "revoked.krl").write_bytes(empty_krl(tmp))
    server = factory(auth_lines=shown["sshd_config"])
    server.principals_dir = directory  # removed with the sshd
    return server


@pytest.fixture(scope="module")
def site(sshd_logins: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("binding")
    data, policy = tmp / "data", tmp / "policy.yaml"
    tokens = {}
    for name, group in {"alice": "engineers", "bob": "sre-leads"}.items():
        added = ok("users", "add", name, f"--group={group}", "--data-dir", str(data), "--json")
        tokens[name] = json.loads(added)["token"]
    ok("init", "--data-dir", str(data))  # makes the CAs; `ca show --data-dir` only reads them
    user_ca = ok("ca", "show", "--data-dir", str(data))
    policy.write_text(POLICY.format(web=22, stage=22))  # sshd-config needs no ports
    factory = SshdFactory(tmp_path_factory)
    sshds = {name: configure_sshd(factory, policy, name, user_ca, tmp) for name in ("web-1", "stage-1")}
    policy.write_text(POLICY.format(web=sshds["web-1"].port, stage=sshds["stage-1"].port))
    server = Server.start(data, policy, tmp / "server.log", {})
    yield Site(tmp, server.url, tokens, sshds)
    server.stop()
    factory.stop_all()


def test_sshd_config_lists_only_the_principals_bound_to_the_target(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(web=22, stage=22))
    shown = ok("target", "sshd-config", "web-1", "--policy", str(policy))
    assert shown.splitlines() == [
        "# sshd_config of web-1, before any Match block:",
        "TrustedUserCAKeys /etc/ssh/jitgate/user_ca.pub",
        "AuthorizedPrincipalsFile /etc/ssh/jitgate/principals/%u",
        "AuthorizedKeysFile none",
        "RevokedKeys /etc/ssh/jitgate/revoked.krl",
        "# /etc/ssh/jitgate/user_ca.pub: the lines of `jitgate ca show`",
        "# /etc/ssh/jitgate/revoked.krl: kept current with"
        " `jitgate ca krl --out /etc/ssh/jitgate/revoked.krl`",
        "# /etc/ssh/jitgate/principals/deploy (owned by root, mode 0644):",
        "deploy@web-1",
    ]
    unknown = jitgate("target", "sshd-config", "web-9", "--policy", str(policy))
    assert (unknown.returncode, unknown.stderr) == (6, "error: no target named 'web-9'\n")
    odd = jitgate("target", "sshd-config", "web-1", "--policy", str(policy), "--dir", "/etc/ssh/j itgate")
    assert odd.returncode == 3
    assert "not an absolute path of plain characters" in odd.stderr


def test_a_certificate_for_the_stage_host_is_refused_by_the_production_host(site: Site) -> None:
    granted = site.cli("alice", "request", "stage-shell", "--for", "30m", "--json")
    assert granted.returncode == 0, granted.stderr
    assert json.loads(granted.stdout)["state"] == "ACTIVE"
    key, cert = site.certificate("alice", "stage-1")

    stage = run_ssh(site.sshds["stage-1"], "deploy", key, cert)
    assert (stage.returncode, stage.stdout) == (0, "deploy\n"), stage.stderr
    web = run_ssh(site.sshds["web-1"], "deploy", key, cert)
    assert web.returncode == 255
    assert "Permission denied (publickey)" in web.stderr
    assert "Certificate does not contain an authorized principal" in site.sshds["web-1"].log()

    # and the broker itself refuses web-1 until the approval
    refused = site.cli("alice", "ssh-cert", "web-1", "--public-key", f"{key}.pub")
    assert refused.returncode == 5
    assert "alice holds no active grant for target web-1" in refused.stderr


def test_a_certificate_for_the_production_host_opens_only_the_production_host(site: Site) -> None:
    asked = site.cli("alice", "request", "prod-shell", "--reason", "CHG-1", "--for", "30m", "--json")
    assert asked.returncode == 0, asked.stderr
    request_id = json.loads(asked.stdout)["id"]
    approved = site.cli("bob", "approve", request_id, "--comment", "ok")
    assert approved.returncode == 0, approved.stderr
    key, cert = site.certificate("alice", "web-1")

    assert run_ssh(site.sshds["web-1"], "deploy", key, cert).stdout == "deploy\n"
    stage = run_ssh(site.sshds["stage-1"], "deploy", key, cert)
    assert stage.returncode == 255
    assert "Permission denied (publickey)" in stage.stderr
    shown = subprocess.run(["ssh-keygen", "-L", "-f", str(cert)], capture_output=True, text=True, check=True)
    assert "Principals: \n                deploy@web-1\n        Critical" in shown.stdout
