"""``jitgate ssh`` and friends end to end: the real CLI, a real ``jitgate server`` process, a real sshd.

The sshd trusts the broker's user CA (read with ``jitgate ca show --data-dir``), shows a host
certificate from ``jitgate host-cert`` (so ``StrictHostKeyChecking=yes`` passes with no prompt) and
reads its ``RevokedKeys`` from a file written by ``jitgate ca krl``. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sshd import Sshd, SshdFactory, empty_krl, run_ssh

from support import component_missing
from support.broker import JITGATE, Server

pytestmark = pytest.mark.sshd

POLICY = """
targets:
  - {{name: web-1, kind: ssh, address: 127.0.0.1, port: {port}, labels: {{env: prod}}}}
  - {{name: web-2, kind: ssh, address: 127.0.0.1, port: {port}, labels: {{env: other}}}}
  - {{name: bare-1, kind: ssh, address: 127.0.0.1, port: {bare_port}}}
  - {{name: orders, kind: postgres, admin_dsn_env: JG_CLI_ORDERS_DSN}}
roles:
  - name: shell
    targets: {{names: [web-1, bare-1]}}
    ssh: {{logins: [deploy, ops]}}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
  - name: other-shell
    targets: {{names: [web-2]}}
    ssh: {{logins: [deploy]}}
    max_duration: 1h
    requesters: [group:web2]
    approval: auto
  - name: orders-read
    targets: {{names: [orders]}}
    postgres: {{member_of: [{readers}]}}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
"""
PG_SUPERUSER = "postgresql://postgres@127.0.0.1:5432/postgres"
USERS = {"alice": ["engineers"], "carol": ["engineers"], "dave": ["engineers"], "erin": ["engineers"]}


def offline(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*JITGATE, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done


@dataclass
class World:
    """A broker process, an sshd that trusts it, and people with tokens."""

    tmp: Path
    data: Path
    server: Server
    sshd: Sshd
    tokens: dict[str, str]
    pg_database: str
    pg_readers: str
    grants: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def runtime_base(self, user: str) -> Path:
        """``$XDG_RUNTIME_DIR/jitgate`` of ``user``'s CLI runs."""
        return self.tmp / f"run-{user}" / "jitgate"

    def env(self, user: str | None) -> dict[str, str]:
        run = self.tmp / f"run-{user}"
        run.mkdir(mode=0o700, exist_ok=True)
        env = {
            **os.environ,
            "JITGATE_URL": self.url,
            "XDG_CONFIG_HOME": str(self.tmp / "cfg"),
            "XDG_RUNTIME_DIR": str(run),
        }
        env.pop("JITGATE_TOKEN", None)
        if user is not None:
            env["JITGATE_TOKEN"] = self.tokens[user]
        return env

    def run(
        self, *args: str, user: str | None = "alice", timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*JITGATE, *args],
            env=self.env(user),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def ok(self, *args: str, user: str | None = "alice") -> str:
        done = self.run(*args, user=user)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    def http(self, method: str, path: str, user: str | None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def audit(self, **params: str) -> list[dict[str, Any]]:
        """Matching audit events, oldest first."""
        response = self.http("GET", "/api/v1/audit", "admin", params={"limit": "1000", **params})
        assert response.status_code == 200, response.text
        return sorted(response.json(), key=lambda e: int(e["seq"]))

    def credentials_of(self, holder: str) -> int:
        with sqlite3.connect(f"file:{self.data / 'jitgate.db'}?mode=ro", uri=True) as conn:
            return int(
                conn.execute("SELECT count(*) FROM credentials WHERE holder = ?", (holder,)).fetchone()[0]
            )


def new_key(directory: Path, name: str, kind: str = "ed25519") -> Path:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)], check=True)
    return key


@pytest.fixture(scope="module")
def world(
    sshd_logins: tuple[str, ...], sshd: Sshd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """``sshd`` (the shared one, ``bare-1``) has a host key without a certificate."""
    tmp = tmp_path_factory.mktemp("cli-ssh")
    data = tmp / "data"
    tokens = {}
    for name, groups in {**USERS, "admin": []}.items():
        flags = [f"--group={g}" for g in groups] + (["--admin"] if name == "admin" else [])
        added = offline("users", "add", name, *flags, "--data-dir", str(data), "--json")
        tokens[name] = json.loads(added.stdout)["token"]
    policy = tmp / "policy.yaml"
    log = tmp / "server.log"
    suffix = secrets.token_hex(4)
    pg_database, pg_readers = f"jg_cli_{suffix}", f"jg_cli_ro_{suffix}"
    server_env = {"JG_CLI_ORDERS_DSN": PG_SUPERUSER.rsplit("/", 1)[0] + f"/{pg_database}"}

    # The host certificate comes from the broker, and the broker's policy needs the sshd's port:
    # certify first, start sshd, then restart the broker with the real port.
    policy.write_text(POLICY.format(port=22, bare_port=sshd.port, readers=pg_readers))
    first = Server.start(data, policy, log, server_env)
    host_key = new_key(tmp, "host_ed25519")
    certified = subprocess.run(
        [*JITGATE, "host-cert", "--public-key", f"{host_key}.pub", "--principal", "127.0.0.1",
         "--principal", "web-1", "--validity", "1d", "--url", first.url, "--token", tokens["admin"]],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    first.stop()
    assert certified.returncode == 0, certified.stderr
    host_certificate = certified.stdout.strip()
    assert host_certificate.startswith("ssh-ed25519-cert-v01@openssh.com ")

    user_ca = offline("ca", "show", "--data-dir", str(data)).stdout.splitlines()
    sshd.trust(user_ca)
    sshd.serve("bare-1")
    factory = SshdFactory(tmp_path_factory)
    server_sshd = factory(
        target="web-1",
        trusted_ca_lines=user_ca,
        revoked_keys=empty_krl(tmp),
        host_certificate=host_certificate,
        host_key=host_key,
    )
    policy.write_text(POLICY.format(port=server_sshd.port, bare_port=sshd.port, readers=pg_readers))
    server = Server.start(data, policy, log, server_env)
    found = World(tmp, data, server, server_sshd, tokens, pg_database, pg_readers)
    granted = found.http("POST", "/api/v1/requests", "alice", json={"role": "shell", "duration": "1h"})
    assert granted.json()["state"] == "ACTIVE", granted.text
    found.grants["alice"] = granted.json()["grant"]["id"]
    yield found
    server.stop()
    factory.stop_all()
    text = log.read_text()
    for token in tokens.values():
        assert token not in text, "an API token reached the server log"


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_ssh_runs_the_command_as_the_principal_and_passes_its_exit_code(world: World) -> None:
    done = world.run("ssh", "web-1", "--", "id", "-un")
    assert (done.returncode, done.stdout) == (0, "deploy\n"), done.stderr
    assert world.ok("ssh", "web-1", "--login", "ops", "--", "id", "-un") == "ops\n"
    assert world.run("ssh", "web-1", "--", "exit", "3").returncode == 3
    assert world.run("ssh", "web-1", "--", "exit 0").returncode == 0

    other = world.run("ssh", "web-1", "--login", "root", "--", "true")
    assert other.returncode == 5  # refused by the broker before anything is minted
    assert "login 'root' is not one of the role's logins (deploy, ops)" in one_line_error(other)

    # sshd logs the certificate's key id: user and grant are traceable from the target's log
    assert f"jitgate:user=alice:grant={world.grants['alice']}" in world.sshd.log()
    # no host key was learnt or prompted for, and nothing is left behind
    assert list(world.runtime_base("alice").iterdir()) == []


def test_a_host_without_a_certificate_from_the_host_ca_is_refused_unless_unsafe(world: World) -> None:
    refused = world.run("ssh", "bare-1", "--", "true")
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr
    unsafe = world.run("ssh", "bare-1", "--unsafe-accept-unknown-host", "--", "id", "-un")
    assert (unsafe.returncode, unsafe.stdout) == (0, "deploy\n"), unsafe.stderr
    assert "not checking the host's identity" in unsafe.stderr
    assert list(world.runtime_base("alice").iterdir()) == []


def test_ssh_without_a_grant_is_refused_and_nothing_is_issued(world: World) -> None:
    done = world.run("ssh", "web-1", "--", "true", user="carol")
    assert done.returncode == 5
    assert one_line_error(done) == "error: carol holds no active grant for target web-1"
    actions = [e["action"] for e in world.audit(actor="carol")]
    assert "access.refused" in actions
    assert "credential.issued" not in actions
    assert world.credentials_of("carol") == 0
    assert not world.runtime_base("carol").exists() or list(world.runtime_base("carol").iterdir()) == []


def test_known_hosts_name_the_port_the_ssh_client_looks_up(world: World) -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    minted = world.http(
        "POST", "/api/v1/ssh/certificates", "alice", json={"target": "web-1", "public_key": line}
    )
    assert minted.status_code == 201, minted.text
    assert minted.headers["cache-control"] == "no-store"
    body = minted.json()
    port = world.sshd.port
    assert body["target"] == {"name": "web-1", "address": "127.0.0.1", "port": port}
    host_ca = world.ok("ca", "show", "--kind", "host", user=None).splitlines()
    assert body["known_hosts"] == [f"@cert-authority [127.0.0.1]:{port},[web-1]:{port} {x}" for x in host_ca]
    assert body["principals"] == ["deploy@web-1", "ops@web-1"]
    assert body["logins"] == ["deploy", "ops"]


def test_a_revoked_grant_s_certificate_is_refused_at_once_through_the_krl(world: World) -> None:
    granted = world.http("POST", "/api/v1/requests", "dave", json={"role": "shell", "duration": "30m"})
    grant_id = granted.json()["grant"]["id"]
    key = new_key(world.tmp, "dave")
    cert = world.tmp / "dave-cert.pub"
    world.ok("ssh-cert", "web-1", "--public-key", f"{key}.pub", "--out", str(cert), user="dave")
    assert run_ssh(world.sshd, "deploy", key, cert).returncode == 0

    world.ok("revoke", grant_id, "--comment", "done early", user="dave")
    assert world.sshd.revoked_keys_file is not None
    world.ok("ca", "krl", "--out", str(world.sshd.revoked_keys_file), user=None)

    refused = run_ssh(world.sshd, "deploy", key, cert)
    assert refused.returncode == 255
    assert "Permission denied" in refused.stderr
    assert "revoked by file" in world.sshd.log()
    assert world.run("ssh", "web-1", "--", "true", user="dave").returncode == 5
    assert world.run("ssh", "web-1", "--", "true").returncode == 0  # alice's grant is untouched


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGHUP, False)],
    ids=["ctrl-c", "sigterm-to-jitgate", "sighup-to-jitgate"],
)
def test_nothing_usable_is_left_on_disk_after_a_signal_during_the_session(
    world: World, signum: signal.Signals, to_group: bool
) -> None:
    base = world.runtime_base("alice")
    accepted = world.sshd.log().count("Accepted publickey for deploy")
    session = subprocess.Popen(
        [*JITGATE, "ssh", "web-1", "--", "sleep", "30"],
        env=world.env("alice"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, like a shell job that Ctrl-C is sent to
    )
    try:
        deadline = time.monotonic() + 30
        while world.sshd.log().count("Accepted publickey for deploy") == accepted:
            assert session.poll() is None, session.communicate()
            assert time.monotonic() < deadline, "the ssh session did not start"
            time.sleep(0.05)  # polling for the login, not waiting for time
        [directory] = list(base.iterdir())
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        files = sorted(p.name for p in directory.iterdir())
        assert files == ["id_ed25519", "id_ed25519-cert.pub", "id_ed25519.known_hosts"]
        assert all(stat.S_IMODE((directory / f).stat().st_mode) == 0o600 for f in files)

        if to_group:
            os.killpg(session.pid, signum)
        else:
            session.send_signal(signum)  # passed on to ssh; jitgate cleans up once ssh has gone
        _, stderr = session.communicate(timeout=20)
    finally:
        if session.poll() is None:
            os.killpg(session.pid, signal.SIGKILL)
            session.communicate()
    assert session.returncode != 0, stderr
    assert list(base.iterdir()) == []


def test_ssh_config_makes_plain_ssh_go_through_jitgate(world: World) -> None:
    config = world.tmp / "ssh_config"
    config.write_text(world.ok("ssh-config"))
    base = world.runtime_base("alice")
    env = world.env("alice")
    shown = subprocess.run(
        ["ssh", "-G", "-F", str(config), "web-1"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert "hostname 127.0.0.1" in shown
    assert f"port {world.sshd.port}" in shown
    assert "user deploy" in shown
    assert f"certificatefile {base}/web-1-cert.pub" in shown
    assert "stricthostkeychecking true" in shown
    assert "identitiesonly yes" in shown
    assert not any(x.startswith("hostname ") and "web-2" in x for x in shown)

    done = subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", "web-1", "id", "-un"],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "deploy\n"), done.stderr
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    assert stat.S_IMODE((base / "web-1").stat().st_mode) == 0o600

    unknown = world.run("ssh-config", "web-2")
    assert unknown.returncode == 6
    assert "no ssh target 'web-2'" in one_line_error(unknown)

    refused = subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", "web-1", "true"],
        capture_output=True, text=True, env=world.env("carol"), stdin=subprocess.DEVNULL, check=False,
        timeout=60,
    )  # fmt: skip
    assert refused.returncode == 255
    assert "carol holds no active grant for target web-1" in refused.stderr


def test_ssh_cert_prints_a_certificate_ssh_keygen_reads(world: World) -> None:
    key = new_key(world.tmp, "alice-own")
    line = world.ok("ssh-cert", "web-1", "--public-key", f"{key}.pub").strip()
    cert = world.tmp / "alice-own-cert.pub"
    cert.write_text(line + "\n")
    shown = subprocess.run(["ssh-keygen", "-L", "-f", str(cert)], capture_output=True, text=True, check=True)
    assert "user certificate" in shown.stdout
    assert "\n                deploy@web-1\n                ops@web-1\n" in shown.stdout
    assert run_ssh(world.sshd, "ops", key, cert).stdout == "ops\n"


def test_host_certificates_are_for_admins_only(world: World) -> None:
    key = new_key(world.tmp, "some-host")
    done = world.run("host-cert", "--public-key", f"{key}.pub", "--principal", "h1")
    assert done.returncode == 5
    assert "alice is not an admin" in one_line_error(done)
    refused = world.audit(actor="alice", action="access.refused")
    assert refused[-1]["details"]["attempted"] == "host_certificate.issue"


def _public_line(key: Any) -> str:
    return str(key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode())


def test_bad_input_is_refused_with_a_json_error_audited_and_nothing_issued(world: World) -> None:
    good = _public_line(ed25519.Ed25519PrivateKey.generate().public_key())
    dsa_key = (new_key(world.tmp, "old-dsa", "dsa").with_suffix(".pub")).read_text().strip()
    user_ca = world.ok("ca", "show", user=None).splitlines()[0]
    host_ca = world.ok("ca", "show", "--kind", "host", user=None).splitlines()[0]

    def chunks() -> Iterator[bytes]:
        yield b'{"target": "web-1", "public_key": "'
        for _ in range(40):
            yield b"A" * 4096
        yield b'"}'

    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("not a key", {"json": {"target": "web-1", "public_key": "hello there"}}, 400, "invalid_input"),
        ("a DSA key", {"json": {"target": "web-1", "public_key": dsa_key}}, 400, "invalid_input"),
        ("the user CA's key", {"json": {"target": "web-1", "public_key": user_ca}}, 400, "invalid_input"),
        ("the host CA's key", {"json": {"target": "web-1", "public_key": host_ca}}, 400, "invalid_input"),
        ("a target not in the grant", {"json": {"target": "web-2", "public_key": good}}, 403, "forbidden"),
        ("an unknown target", {"json": {"target": "nope", "public_key": good}}, 404, "not_found"),
        (
            "a smuggled principal",
            {"json": {"target": "web-1", "public_key": good, "principals": ["root"]}},
            422,
            "invalid_request",
        ),
        (
            "a smuggled validity",
            {"json": {"target": "web-1", "public_key": good, "valid_before": "2099-01-01"}},
            422,
            "invalid_request",
        ),
        (
            "malformed JSON",
            {"content": b'{"target": "web-1",', "headers": {"Content-Type": "application/json"}},
            422,
            "invalid_request",
        ),
        (
            "a body that is not JSON",
            {"content": b"target=web-1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            422,
            "invalid_request",
        ),
        (
            "a huge body",
            {"json": {"target": "web-1", "public_key": good + " " + "x" * 200_000}},
            413,
            "too_large",
        ),
        (
            "a huge chunked body",
            {"content": chunks(), "headers": {"Content-Type": "application/json"}},
            413,
            "too_large",
        ),
    ]
    issued_before = world.credentials_of("alice")
    for label, request, status, code in cases:
        refused_before = len(world.audit(actor="alice", action="access.refused"))
        response = world.http("POST", "/api/v1/ssh/certificates", "alice", **request)
        assert response.status_code == status, (label, response.text)
        assert response.headers["content-type"] == "application/problem+json", label
        assert response.json()["code"] == code, (label, response.json())
        assert "\n" not in response.json()["detail"]
        refused = world.audit(actor="alice", action="access.refused")
        assert len(refused) == refused_before + 1, label
        assert refused[-1]["details"]["attempted"] == "credential.issue", label
    assert world.credentials_of("alice") == issued_before
    assert "credential.issued" not in [e["details"].get("attempted") for e in world.audit(actor="alice")]

    # Nobody to attribute it to: answered the same way, but not written to the log.
    events = len(world.audit())
    anonymous = world.http("POST", "/api/v1/ssh/certificates", None, content=b"x" * 100_000)
    assert anonymous.status_code == 413
    assert len(world.audit()) == events


def test_ca_show_online_and_offline_agree_and_rotation_keeps_both_through_the_overlap(world: World) -> None:
    key = new_key(world.tmp, "before-rotation")
    cert = world.tmp / "before-rotation-cert.pub"
    world.ok("ssh-cert", "web-1", "--public-key", f"{key}.pub", "--out", str(cert))
    online = world.ok("ca", "show", user=None).splitlines()
    assert online == world.ok("ca", "show", "--data-dir", str(world.data), user=None).splitlines()
    assert len(online) == 1

    assert world.run("ca", "rotate", "--overlap", "1h").returncode == 5  # alice is no admin
    world.ok("ca", "rotate", "--overlap", "1h", user="admin")
    rotated = world.ok("ca", "show", user=None).splitlines()
    assert rotated == world.ok("ca", "show", "--data-dir", str(world.data), user=None).splitlines()
    assert len(rotated) == 2
    assert rotated[1] == online[0]  # the old CA stays trusted, listed after the new one

    world.sshd.trust(rotated)  # what an operator rolls out: both lines
    assert run_ssh(world.sshd, "deploy", key, cert).returncode == 0  # minted by the old CA
    assert world.ok("ssh", "web-1", "--", "id", "-un") == "deploy\n"  # minted by the new CA


@pytest.fixture
def orders_database(world: World) -> Iterator[str]:
    """The ``orders`` target's database and its readers' group role, on the real PostgreSQL."""
    import psycopg
    from psycopg import sql

    try:
        root = psycopg.connect(PG_SUPERUSER, autocommit=True)
    except psycopg.OperationalError:
        component_missing("PostgreSQL on 127.0.0.1:5432")
    database, readers = sql.Identifier(world.pg_database), sql.Identifier(world.pg_readers)
    with root:
        root.execute(sql.SQL("CREATE DATABASE {}").format(database))
        root.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(readers))
        try:
            yield world.pg_database
        finally:
            root.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
            logins = root.execute(
                "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid"
                " JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = %s",
                [world.pg_readers],
            ).fetchall()
            for (name,) in logins:
                root.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
            root.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(readers))


def test_db_prints_a_fresh_login_and_runs_psql_with_it_through_the_environment(
    world: World, orders_database: str
) -> None:
    wrong = world.run("db", "web-1")
    assert wrong.returncode == 3
    assert "target web-1 is of kind ssh; use jitgate ssh" in one_line_error(wrong)
    assert world.run("db", "orders", user="erin").returncode == 5  # no grant yet

    granted = world.http("POST", "/api/v1/requests", "erin", json={"role": "orders-read", "duration": "10m"})
    assert granted.json()["state"] == "ACTIVE", granted.text
    found = json.loads(world.ok("db", "orders", "--json", user="erin"))
    assert set(found) >= {"user", "password", "dsn", "expires_at"}
    assert found["expires_at"] == granted.json()["grant"]["expires_at"]
    assert f"/{orders_database}" in found["dsn"]

    exported = world.ok("db", "orders", user="erin")
    assert re.search(r"^export PGUSER=jit_", exported, re.MULTILINE)
    assert re.search(r"^export PGPASSWORD=\S+", exported, re.MULTILINE)
    assert f"export PGDATABASE={orders_database}" in exported

    who = world.ok("db", "orders", "--exec", "--", "-tAc", "select current_user", user="erin")
    assert who.startswith("jit_"), who
    failed = world.run("db", "orders", "--exec", "--", "-c", "select 1/0", user="erin")
    assert failed.returncode == 1
    assert "division by zero" in failed.stderr
    world.ok("revoke", granted.json()["grant"]["id"], user="erin")
