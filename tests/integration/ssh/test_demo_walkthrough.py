"""The walk-through ``jitgate demo`` prints works when pasted as it is, on this machine.

A real ``jitgate demo`` process (with a PostgreSQL admin DSN in its environment, as the text tells
a newcomer to start it), then the printed lines themselves run in bash: the shell set-up, alice's
request and bob's approval, ``scripts/demo-sshd`` as the throwaway target, ``jitgate ssh`` through
it, and dave's ``jitgate db --exec`` against PostgreSQL. Only the web-1 port in the demo policy is
changed (to a free one) and the request id is filled in where the text says REQUEST-ID.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import httpx
import pytest

from support import component_missing
from support.broker import JITGATE, free_port

pytestmark = pytest.mark.sshd
PG_SUPERUSER = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Demo:
    tmp: Path
    url: str
    text: str
    env: dict[str, str]
    database: str

    def line(self, pattern: str) -> str:
        """The one printed command line matching ``pattern``."""
        found = [line.strip() for line in self.text.splitlines() if re.search(pattern, line)]
        assert len(found) == 1, (pattern, self.text)
        return found[0]

    def shell_setup(self) -> str:
        """Section 1's set-up lines: cd, activate (when printed), export, tok()."""
        patterns = (r"^\s+cd [^&]+$", r"^\s+export JITGATE_URL=", r"^\s+tok\(\)")
        lines = [self.line(pattern) for pattern in patterns]
        activate = [line.strip() for line in self.text.splitlines() if line.strip().startswith(". ")]
        return "\n".join([lines[0], *activate, *lines[1:]])

    def bash(self, *commands: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        script = "\n".join(["set -e", self.shell_setup(), *commands])
        return subprocess.run(
            ["bash", "-c", script],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )


def newcomer_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JITGATE_", "DEMO_"))}
    run = tmp / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    return {**env, "XDG_CONFIG_HOME": str(tmp / "cfg"), "XDG_RUNTIME_DIR": str(run)}


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    import psycopg
    from psycopg import sql

    try:
        root = psycopg.connect(PG_SUPERUSER, autocommit=True)
    except psycopg.OperationalError:
        component_missing("PostgreSQL on 127.0.0.1:5432 (trust auth)")
    name = f"jg_demo_{secrets.token_hex(4)}"
    with root:
        root.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield name
        finally:
            root.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def demo(
    sshd_logins: tuple[str, ...], pg_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("demo")
    data = tmp / "demo-data"
    data.mkdir(mode=0o700)
    packaged = (files("jitgate") / "demo" / "policy.yaml").read_text()
    assert "port: 2222" in packaged
    (data / "demo-policy.yaml").write_text(packaged.replace("port: 2222", f"port: {free_port()}"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = newcomer_env(tmp)
    dsn = PG_SUPERUSER.rsplit("/", 1)[0] + f"/{pg_database}"
    log = tmp / "demo.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [*JITGATE, "demo", "--data-dir", "demo-data", "--listen", f"127.0.0.1:{port}"],
            cwd=tmp,
            env={**env, "DEMO_ORDERS_DB_ADMIN_DSN": dsn},
            stdout=subprocess.DEVNULL,
            stderr=handle,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("jitgate demo did not start: " + log.read_text()[-2000:])
            time.sleep(0.1)  # polling for the demo to come up
        text = log.read_text()
        yield Demo(tmp, url, text[: text.index("API: ")], env, pg_database)
    finally:
        process.terminate()
        process.wait(timeout=20)


@dataclass
class DemoSshd:
    process: subprocess.Popen[bytes]
    directory: Path


@pytest.fixture
def demo_sshd(demo: Demo) -> Iterator[DemoSshd]:
    """The printed ``scripts/demo-sshd`` line, running in a process group of its own."""
    start = demo.line(r"demo-sshd ")
    log = demo.tmp / "demo-sshd.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            ["bash", "-c", start],
            env=demo.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole, like Ctrl-C does
        )
    deadline = time.monotonic() + 60
    while "Server listening on 127.0.0.1" not in log.read_text():
        if time.monotonic() > deadline or process.poll() is not None:
            pytest.fail("demo-sshd did not start: " + log.read_text()[-3000:])
        time.sleep(0.05)  # polling for sshd to come up
    found = re.search(r"wrote (\S+)/host_ed25519-cert\.pub", log.read_text())
    assert found is not None, log.read_text()
    try:
        yield DemoSshd(process, Path(found.group(1)))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)


def test_the_walkthrough_names_the_sshd_script_and_the_database_commands(demo: Demo) -> None:
    assert demo.line(r"demo-sshd ").endswith("scripts/demo-sshd demo-data web-1")
    assert demo.line(r"jitgate db ") == (
        "JITGATE_TOKEN=$(tok dave) jitgate db orders-db --exec -- -c 'select current_user'"
    )


def test_the_printed_commands_request_approve_and_ssh_through_the_demo_sshd_which_then_goes_away(
    demo: Demo, demo_sshd: DemoSshd
) -> None:
    asked = demo.bash(demo.line(r"jitgate request prod-shell"))
    assert asked.returncode == 0, asked.stderr
    found = re.search(r"request (r-[0-9a-f]+)\s+PENDING", asked.stdout)
    assert found is not None, asked.stdout
    approved = demo.bash(demo.line(r"jitgate approve ").replace("REQUEST-ID", found.group(1)))
    assert approved.returncode == 0, approved.stderr
    assert "ACTIVE" in approved.stdout
    connected = demo.bash(demo.line(r"jitgate ssh web-1 "))
    assert connected.returncode == 0, connected.stderr
    assert "(deploy)" in connected.stdout

    # Ctrl-C (here SIGTERM to its process group) stops sshd and removes every file it had.
    sshd_pid = int((demo_sshd.directory / "sshd.pid").read_text())
    os.killpg(demo_sshd.process.pid, signal.SIGTERM)
    demo_sshd.process.wait(timeout=20)
    deadline = time.monotonic() + 20
    while demo_sshd.directory.exists() or _alive(sshd_pid):
        if time.monotonic() > deadline:
            pytest.fail(f"demo-sshd left {demo_sshd.directory} or sshd {sshd_pid} behind")
        time.sleep(0.05)  # polling for the script's clean-up


def test_the_printed_database_commands_give_dave_a_login_of_his_own(demo: Demo) -> None:
    asked = demo.bash(demo.line(r"jitgate request orders-read"))
    assert asked.returncode == 0, asked.stderr
    assert "ACTIVE" in asked.stdout
    grant = re.search(r"grant (g-[0-9a-f]+)", asked.stdout)
    assert grant is not None
    login = None
    try:
        queried = demo.bash(demo.line(r"jitgate db "))
        assert queried.returncode == 0, queried.stderr
        login = re.search(r"^ (jit_dave_[0-9a-f]+)$", queried.stdout, re.MULTILINE)
        assert login is not None, queried.stdout
    finally:
        revoked = demo.bash(f"JITGATE_TOKEN=$(tok dave) jitgate revoke {grant.group(1)}")
        assert revoked.returncode == 0, revoked.stderr
    if login is not None:  # revoking drops the login at the server (the cluster outlives the test)
        import psycopg

        deadline = time.monotonic() + 30
        with psycopg.connect(PG_SUPERUSER, autocommit=True) as root:
            while root.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login.group(1),)).fetchone():
                if time.monotonic() > deadline:
                    pytest.fail(f"{login.group(1)} is still there after the grant was revoked")
                time.sleep(0.1)  # polling for the broker's revocation


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
