"""A newcomer's first hour: every mistake is one line and an exit code, nothing is created by a
command that only looks, the audit export works against a running broker, ``login`` never shows
the token. The real ``jitgate`` program, run as a process, against a real ``jitgate server``."""

from __future__ import annotations

import itertools
import json
import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitgate.audit.canonical import canonical_json, record_hash
from support.broker_process import JITGATE, Process, broker


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of someone with no jitgate settings at all, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "cfg")
    return {**env, **extra}


def run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JITGATE, *args],
        env=env if env is not None else clean_env(tmp_path),
        cwd=tmp_path,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The only line on stderr; fails on a traceback or on several lines."""
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    with broker(tmp_path_factory.mktemp("first-hour"), {}) as found:
        yield found


# -- ca show --data-dir only looks ----------------------------------------------------------------


def test_ca_show_on_a_data_dir_without_a_ca_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("an unrelated file\n")
    before = tree(tmp_path)
    for kind in ("user", "host"):
        done = run(tmp_path, "ca", "show", "--kind", kind, "--data-dir", str(data))
        assert done.returncode == 6
        assert one_line(done) == (
            f"error: no {kind} CA in {data}/ca; start the broker on it once, or run jitgate init "
            f"--data-dir {data}"
        )
        assert done.stdout == ""
    assert tree(tmp_path) == before


def test_ca_show_on_a_missing_data_dir_does_not_create_it(tmp_path: Path) -> None:
    done = run(tmp_path, "ca", "show", "--data-dir", str(tmp_path / "nowhere"))
    assert done.returncode == 6
    one_line(done)
    assert not (tmp_path / "nowhere").exists()


def test_ca_show_on_the_data_dir_of_a_broker_that_ran_shows_its_ca(running: Process, tmp_path: Path) -> None:
    data = Path(running.log).parent / "data"
    before = tree(data / "ca")
    done = run(tmp_path, "ca", "show", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ssh-ed25519 ")
    assert tree(data / "ca") == before


def test_policy_explain_with_a_data_dir_that_is_not_there_creates_no_broker(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(
        "targets: [{name: t, kind: ssh, address: 127.0.0.1}]\n"
        "roles: [{name: r, targets: {names: [t]}, ssh: {logins: [x]}, max_duration: 1h,"
        " requesters: [group:g], approval: auto}]\n"
    )
    done = run(tmp_path, "policy", "explain", "--user", "u", "--role", "r", "--data-dir", "nowhere")
    assert done.returncode == 6
    assert one_line(done) == "error: no broker database in nowhere"
    assert not (tmp_path / "nowhere").exists()


# -- a URL without a scheme, a bad setting: one line -----------------------------------------------


NOT_A_URL = "is not an http:// or https:// URL"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {"JITGATE_URL": "127.0.0.1:8080"},
         f"JITGATE_URL: '127.0.0.1:8080' {NOT_A_URL}; did you mean http://127.0.0.1:8080?"),
        (("--url", "localhost:8080"), {}, f"--url: 'localhost:8080' {NOT_A_URL}; did you mean http://localhost:8080?"),
        (("--url", "ftp://example.org"), {}, f"--url: 'ftp://example.org' {NOT_A_URL}"),
        (("--url", "http://127.0.0.1:port"), {},
         "--url: 'http://127.0.0.1:port' has a port that is not a number"),
    ],
)  # fmt: skip
def test_a_broker_url_that_is_not_a_url_is_one_line_naming_where_it_came_from(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    for command in (["roles", *args], ["audit", *args], ["ssh", "web-1", *args, "--", "true"]):
        done = run(tmp_path, *command, env=clean_env(tmp_path, JITGATE_TOKEN="t", **env))
        assert done.returncode == 3, (command, done.stderr)
        assert one_line(done) == f"error: {expected}"


def test_a_url_without_a_scheme_in_the_login_file_names_the_file(tmp_path: Path) -> None:
    login = tmp_path / "cfg" / "jitgate" / "login.json"
    login.parent.mkdir(parents=True)
    login.write_text(json.dumps({"url": "broker.example:8080", "token": "t"}))
    done = run(tmp_path, "whoami")
    assert done.returncode == 3
    assert one_line(done).startswith(f"error: {login}: 'broker.example:8080' is not an http://")


HOST_PORT = "must be HOST:PORT, e.g. 127.0.0.1:8080"


@pytest.mark.parametrize(
    ("env", "flags", "expected"),
    [
        ({"JITGATE_WORKERS": "abc"}, (), "JITGATE_WORKERS: must be a whole number"),
        ({"JITGATE_WORKERS": "0"}, (), "JITGATE_WORKERS: must be at least 1"),
        ({}, ("--workers", "99"), "--workers: must be at most 64"),
        ({"JITGATE_LISTEN": "nonsense"}, (), f"JITGATE_LISTEN: {HOST_PORT}"),
        ({}, ("--listen", "127.0.0.1:99999"), f"--listen: {HOST_PORT}"),
        ({"JITGATE_GATEWAY_LISTEN": "2222"}, (), f"JITGATE_GATEWAY_LISTEN: {HOST_PORT}"),
        ({"JITGATE_PUBLIC_URL": "foo"}, (), "JITGATE_PUBLIC_URL: must be an http:// or https:// URL"),
        ({"JITGATE_WEBHOOK_URL": "hooks.example/x"}, (),
         "JITGATE_WEBHOOK_URL: must be an http:// or https:// URL"),
        ({"JITGATE_SCHEDULER_POLL_SECONDS": "soon"}, (), "JITGATE_SCHEDULER_POLL_SECONDS: must be a number"),
        ({"JITGATE_OIDC_ADMIN_GROUPS": "admins"}, (),
         'JITGATE_OIDC_ADMIN_GROUPS: cannot be parsed (a list is JSON, e.g. ["a", "b"])'),
        ({"JITGATE_CA_PASSPHRASE_FILE": "/nonexistent/pass"}, (),
         "JITGATE_CA_PASSPHRASE_FILE: cannot read /nonexistent/pass: No such file or directory"),
        ({"JITGATE_DATABASE_URL": "db.example/jitgate"}, (),
         "JITGATE_DATABASE_URL: must be a database URL, e.g. postgresql+psycopg://USER@HOST/DB"),
        ({}, ("--database-url", "jitgate"),
         "--database-url: must be a database URL, e.g. postgresql+psycopg://USER@HOST/DB"),
        ({"JITGATE_WORKERS": "x", "JITGATE_LISTEN": "y"}, (),
         f"JITGATE_LISTEN: {HOST_PORT}; JITGATE_WORKERS: must be a whole number"),
    ],
)  # fmt: skip
def test_a_bad_setting_stops_the_server_with_one_line_naming_it(
    tmp_path: Path, env: dict[str, str], flags: tuple[str, ...], expected: str
) -> None:
    done = run(tmp_path, "server", "--data-dir", "data", *flags, env=clean_env(tmp_path, **env))
    assert done.returncode == 3
    assert one_line(done) == f"error: {expected}"
    assert not (tmp_path / "data").exists()


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory\n")
    for args in (["server", "--data-dir", "data"], ["users", "add", "x", "--data-dir", "data"]):
        done = run(tmp_path, *args)
        assert (done.returncode, one_line(done)) == (3, "error: --data-dir: data is not a directory")


def test_a_bad_setting_stops_the_demo_with_one_line_before_it_creates_anything(tmp_path: Path) -> None:
    env = clean_env(tmp_path, JITGATE_WEBHOOK_SECRET_FILE=str(tmp_path / "missing"))
    done = run(tmp_path, "demo", "--data-dir", "demo", "--listen", "127.0.0.1:1", env=env)
    assert done.returncode == 3
    assert one_line(done) == (
        f"error: JITGATE_WEBHOOK_SECRET_FILE: cannot read {tmp_path}/missing: No such file or directory"
    )
    done = run(tmp_path, "demo", "--data-dir", "demo", "--listen", "nowhere", env=clean_env(tmp_path))
    assert (done.returncode, one_line(done)) == (3, "error: --listen: must be HOST:PORT, e.g. 127.0.0.1:8080")
    assert not (tmp_path / "demo").exists()


# -- audit export from a running broker ------------------------------------------------------------


def test_audit_export_from_a_running_broker_is_the_local_export_line_for_line(
    running: Process, tmp_path: Path
) -> None:
    data = Path(running.log).parent / "data"
    for n in range(3):  # a few records of alice's own, beyond the users' creation
        done = run(tmp_path, "request", "stage-shell", "--for", "5m", "--reason", f"t{n}",
                   env=clean_env(tmp_path, JITGATE_URL=running.url, JITGATE_TOKEN=running.token))  # fmt: skip
        assert done.returncode == 0, done.stderr
    remote = tmp_path / "remote.jsonl"
    env = clean_env(tmp_path, JITGATE_URL=running.url, JITGATE_TOKEN=running.admin_token)
    done = run(tmp_path, "audit", "export", "--out", str(remote), env=env)
    assert done.returncode == 0, done.stderr
    local = run(tmp_path, "audit", "export", "--data-dir", str(data))
    assert local.returncode == 0, local.stderr
    lines = remote.read_text().splitlines()
    # The broker may have appended since (expiries); what both saw is the same, byte for byte.
    assert lines == local.stdout.splitlines()[: len(lines)]
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(records[0]["seq"], records[0]["seq"] + len(records)))
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(records))
    for record in records:  # checkable without the broker: each hash covers the rest of its line
        body = {k: v for k, v in record.items() if k != "hash"}
        assert record_hash(record["prev"], canonical_json(body)) == record["hash"]
    assert done.stderr == f"exported {len(lines)} records from {running.url}\n"
    assert not list(tmp_path.glob(".remote.jsonl.*"))


def test_audit_export_from_a_broker_pages_through_everything_and_honours_since(
    running: Process, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, JITGATE_URL=running.url, JITGATE_TOKEN=running.admin_token)
    everything = run(tmp_path, "audit", "export", env=env)
    assert everything.returncode == 0, everything.stderr
    records = [json.loads(line) for line in everything.stdout.splitlines()]
    assert len(records) >= 2
    later = records[len(records) // 2]["at"]
    since = run(tmp_path, "audit", "export", "--since", later, env=env)
    assert since.returncode == 0, since.stderr
    assert all(json.loads(line)["at"] >= later for line in since.stdout.splitlines())
    assert (
        since.stdout.splitlines()
        == [line for line in everything.stdout.splitlines() if json.loads(line)["at"] >= later][
            : len(since.stdout.splitlines())
        ]
    )


def test_audit_export_from_a_broker_gives_a_non_admin_only_their_own_records(
    running: Process, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, JITGATE_URL=running.url, JITGATE_TOKEN=running.token)
    done = run(tmp_path, "audit", "export", env=env)
    assert done.returncode == 0, done.stderr
    assert {json.loads(line)["actor"] for line in done.stdout.splitlines()} <= {"alice"}


def test_audit_export_refused_by_the_broker_is_one_line_and_writes_no_file(
    running: Process, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, JITGATE_URL=running.url, JITGATE_TOKEN="not-a-token")
    done = run(tmp_path, "audit", "export", "--out", "audit.jsonl", env=env)
    assert done.returncode == 4
    one_line(done)
    assert not list(tmp_path.glob("*audit.jsonl*"))


# -- login never shows the token ------------------------------------------------------------------


def test_login_reads_the_token_from_a_pipe_and_never_prints_it(running: Process, tmp_path: Path) -> None:
    done = run(tmp_path, "login", "--url", running.url, stdin=running.token + "\n")
    assert done.returncode == 0, done.stderr
    assert running.token not in done.stdout + done.stderr
    assert "logged in to" in done.stdout
    saved = json.loads((tmp_path / "cfg" / "jitgate" / "login.json").read_text())
    assert saved == {"url": running.url, "token": running.token}
    assert (tmp_path / "cfg" / "jitgate" / "login.json").stat().st_mode & 0o077 == 0


def test_login_with_nothing_piped_in_is_one_line(running: Process, tmp_path: Path) -> None:
    done = run(tmp_path, "login", "--url", running.url, stdin="")
    assert done.returncode == 3
    assert one_line(done) == "error: no token given (type it at the prompt, pipe it in, or pass --token)"
    assert not (tmp_path / "cfg" / "jitgate" / "login.json").exists()


def test_login_at_a_terminal_asks_for_the_token_without_echoing_it(running: Process, tmp_path: Path) -> None:
    pid, terminal = pty.fork()
    if pid == 0:  # the child: jitgate login on a terminal of its own
        try:
            os.chdir(tmp_path)
            os.execve(JITGATE[0], [*JITGATE, "login", "--url", running.url], clean_env(tmp_path))  # noqa: S606
        finally:
            os._exit(127)
    seen = b""
    try:
        seen += read_until(terminal, b"API token: ")
        os.write(terminal, running.token.encode() + b"\n")
        seen += read_until(terminal, b"saved to")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert running.token.encode() not in seen
    assert b"logged in to" in seen


def read_until(fd: int, marker: bytes, timeout: float = 30) -> bytes:
    """What the terminal shows until ``marker`` (polled; the child is starting up)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {marker!r} on the terminal; saw {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


# -- --help in words, through the real entry point ------------------------------------------------


def test_help_of_the_installed_program_shows_words(tmp_path: Path) -> None:
    done = run(tmp_path, "request", "--help", env=clean_env(tmp_path, COLUMNS="160"))
    assert done.returncode == 0
    assert "--for" in done.stdout
    assert "DURATION" in done.stdout
    for python_type in ("<str>", "<bool>", "<float>", "<list[str]>", "TEXT", "FLOAT"):
        assert python_type not in done.stdout


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://exa mple", f"'http://exa mple' {NOT_A_URL}"),
        ("http://[::1", "'http://[::1' is not a URL"),
        ("http://user@broker.example", f"'http://user@broker.example' {NOT_A_URL}"),
    ],
)
def test_a_url_that_no_http_client_could_use_is_one_line(tmp_path: Path, url: str, expected: str) -> None:
    for command in (["roles"], ["ssh", "web-1", "--", "true"]):
        done = run(tmp_path, *command, env=clean_env(tmp_path, JITGATE_URL=url, JITGATE_TOKEN="t"))
        assert (done.returncode, one_line(done)) == (3, f"error: JITGATE_URL: {expected}")


@pytest.mark.parametrize("token", ["jg_tök", "jg_a\nb", "jg_a b", "jg_a\x1b[2J"])
def test_a_token_that_cannot_be_sent_is_one_line_that_never_shows_it(tmp_path: Path, token: str) -> None:
    env = clean_env(tmp_path, JITGATE_URL="http://127.0.0.1:1", JITGATE_TOKEN=token)
    for command in (["roles"], ["ssh", "web-1", "--", "true"]):
        done = run(tmp_path, *command, env=env)
        assert done.returncode == 3
        assert one_line(done) == (
            "error: JITGATE_TOKEN: not a token (it holds a space, a line break or a character outside ASCII)"
        )
    done = run(tmp_path, "login", "--url", "http://127.0.0.1:1", stdin="jg_a b\n")
    assert (done.returncode, one_line(done)) == (
        3,
        "error: the token read from standard input: not a token (it holds a space, a line break or a"
        " character outside ASCII)",
    )
