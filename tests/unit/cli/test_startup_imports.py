"""A client command loads the client and nothing of the server: no web framework, database layer,
settings, policy model, SSH library, cryptography or pydantic. Checked by what a fresh interpreter
has imported after running the command against a small local HTTP server, not by timing it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

# What the broker side pulls in: none of it has any business in a client command.
SERVER_SIDE = (
    "alembic",
    "asyncssh",
    "cryptography",
    "fastapi",
    "httpx",
    "jinja2",
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "yaml",
    "jitgate.api",
    "jitgate.audit",
    "jitgate.gateway",
    "jitgate.policy",
    "jitgate.providers",
    "jitgate.runtime",
    "jitgate.settings",
    "jitgate.store",
    "jitgate.web",
    "jitgate.workflow",
)
# ``jitgate ssh`` goes further: not even the command line's own machinery, nor, for an http://
# broker, the standard library's HTTP client, its header parser or TLS.
CLI_MACHINERY = ("typer", "rich", "jitgate.cli.commands", "jitgate.cli.access", "jitgate.cli.ssh")
HEAVY_STDLIB = ("http.client", "email", "ssl", "urllib.request")

ROLE = {
    "name": "shell",
    "targets": ["web-1"],
    "default_duration": "1h",
    "max_duration": "1h",
    "break_glass": False,
    "approval": "auto",
    "may_request": True,
    "may_approve": False,
}
GRANT = {
    "id": "g-1",
    "state": "ACTIVE",
    "holder": "alice",
    "role": "shell",
    "targets": ["web-1"],
    "expires_at": "2026-12-01T10:00:00Z",
    "seconds_left": 600,
    "pending_revocations": [],
}
ANSWERS: dict[tuple[str, str], tuple[int, Any]] = {
    ("GET", "/api/v1/roles"): (200, [ROLE]),
    ("GET", "/api/v1/whoami"): (200, {"name": "alice", "groups": ["engineers"], "admin": False}),
    ("GET", "/api/v1/grants"): (200, [GRANT]),
    ("POST", "/api/v1/ssh/certificates"): (403, {"detail": "no active grant for web-1"}),
}


class Answers(BaseHTTPRequestHandler):
    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, body = ANSWERS.get((self.command, self.path.split("?")[0]), (404, {"detail": "not found"}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the command's output, not the server's log."""


@pytest.fixture(scope="module")
def broker_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# Runs the command and reports its exit code and the modules it loaded, however it exits: by
# returning, by ``SystemExit``, or by ``os._exit`` as ``jitgate ssh`` does once its session is over.
RUN_AND_LIST = """
import json, os, sys
from jitgate.cli.entry import main

def report(code):
    sys.stdout.flush()
    sys.stderr.write("\\nMODULES " + json.dumps({"code": code, "modules": sorted(sys.modules)}) + "\\n")
    sys.stderr.flush()

exit_now = os._exit
os._exit = lambda code: (report(code), exit_now(code))
try:
    main(sys.argv[1:])
    report(0)
except SystemExit as stop:
    report(stop.code)
"""


def run(args: list[str], url: str, tmp_path: Any) -> tuple[int, str, set[str]]:
    env = {
        "JITGATE_URL": url,
        "JITGATE_TOKEN": "jg_test",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    report = json.loads(done.stderr.rsplit("MODULES ", 1)[1])
    return report["code"], done.stdout + done.stderr, set(report["modules"])


def loaded(modules: set[str], families: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in families))


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["roles"], "shell"),
        (["roles", "--json"], '"may_request": true'),
        (["whoami"], "alice groups=engineers admin=False"),
        (["grants", "--limit", "5"], "g-1"),
    ],
    ids=" ".join,
)
def test_a_client_command_loads_nothing_of_the_server(
    args: list[str], shown: str, broker_url: str, tmp_path: Any
) -> None:
    code, output, modules = run(args, broker_url, tmp_path)
    assert code == 0, output
    assert shown in output
    assert loaded(modules, SERVER_SIDE) == []


@pytest.mark.parametrize("args", [["--help"], ["roles", "--help"], ["--version"]], ids=" ".join)
def test_help_and_version_load_nothing_of_the_server(args: list[str], broker_url: str, tmp_path: Any) -> None:
    code, output, modules = run(args, broker_url, tmp_path)
    assert code == 0, output
    assert loaded(modules, SERVER_SIDE) == []


def test_the_list_of_commands_loads_none_of_them(broker_url: str, tmp_path: Any) -> None:
    code, output, modules = run(["--help"], broker_url, tmp_path)
    assert (code, "roles" in output) == (0, True)
    assert loaded(modules, ("jitgate.cli.access", "jitgate.cli.admin", "jitgate.cli.ssh")) == []


def test_a_refused_value_still_gets_typers_own_message(broker_url: str, tmp_path: Any) -> None:
    code, output, _ = run(["grants", "--limit", "0"], broker_url, tmp_path)
    assert code == 2
    assert "Invalid value for '--limit': Input should be greater than or equal to 1" in output


def test_jitgate_ssh_loads_only_the_session_and_its_http_exchange(broker_url: str, tmp_path: Any) -> None:
    code, output, modules = run(["ssh", "web-1", "--", "true"], broker_url, tmp_path)
    assert (code, "error: no active grant for web-1" in output) == (5, True), output
    assert loaded(modules, SERVER_SIDE + CLI_MACHINERY + HEAVY_STDLIB) == []
    assert not list((tmp_path / "jitgate").iterdir())  # the session directory is gone


@pytest.mark.parametrize("args", [["roles", "--json"], ["whoami"]], ids=" ".join)
def test_a_command_answering_in_lines_or_json_does_not_load_rich(
    args: list[str], broker_url: str, tmp_path: Any
) -> None:
    code, output, modules = run(args, broker_url, tmp_path)
    assert code == 0, output
    assert loaded(modules, ("rich",)) == []
