"""A role that demands a fresh, strong sign-in tells the CLI user the exact command that meets it,
end to end against a real broker: one line, the auth exit code, and nothing requested."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.broker_process import serving

JITGATE = [sys.executable, "-m", "jitgate"]
POLICY = """
targets:
  - {name: stage-1, kind: ssh, address: 127.0.0.1, labels: {env: stage}}
roles:
  - name: stage-root
    targets: {labels: {env: stage}}
    ssh: {logins: [root]}
    max_duration: 30m
    requesters: [group:engineers]
    approval: auto
    requires: {fresh_login: 5m, acr: [urn:jitgate:mfa]}
"""


def test_an_api_token_asking_for_a_step_up_role_is_told_the_login_command(tmp_path: Path) -> None:
    data, policy = tmp_path / "data", tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    added = subprocess.run(
        [*JITGATE, "users", "add", "alice", "--group=engineers", "--data-dir", str(data), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    token = json.loads(added.stdout)["token"]
    with serving(data, policy, tmp_path / "server.log", {}) as (url, _, _):
        env = {**os.environ, "JITGATE_URL": url, "JITGATE_TOKEN": token, "HOME": str(tmp_path)}
        asked = subprocess.run(
            [*JITGATE, "request", "stage-root", "--reason", "INC-1", "--for", "10m"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        listed = subprocess.run(
            [*JITGATE, "requests", "--json"], capture_output=True, text=True, env=env, check=True
        )
    assert asked.returncode == 4, asked.stderr
    lines = asked.stderr.strip().splitlines()
    assert len(lines) == 1, asked.stderr
    assert lines[0].endswith("run jitgate login --oidc --max-age 300 --acr urn:jitgate:mfa")
    assert json.loads(listed.stdout) == []
