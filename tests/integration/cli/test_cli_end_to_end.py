"""The real ``jitgate`` command against a real ``jitgate server`` process: the README's walk-through,
expiry that happens by itself within a few seconds, exit codes and one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

POLICY = """
targets:
  - {name: stage-1, kind: ssh, address: 127.0.0.1, labels: {env: stage}}
  - {name: web-1, kind: ssh, address: 127.0.0.1, labels: {env: prod}}
roles:
  - name: stage-shell
    targets: {labels: {env: stage}}
    ssh: {logins: [deploy]}
    min_duration: 1s
    max_duration: 30m
    requesters: [group:engineers]
    approval: auto
  - name: prod-shell
    targets: {labels: {env: prod}}
    ssh: {logins: [deploy]}
    max_duration: 4h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
    reason: {required: true, pattern: '^INC-[0-9]+'}
  - name: emergency-shell
    targets: {labels: {env: prod}}
    ssh: {logins: [deploy]}
    max_duration: 1h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
    break_glass: true
"""

JITGATE = [sys.executable, "-m", "jitgate"]


@dataclass
class Broker:
    url: str
    data_dir: Path
    tokens: dict[str, str]
    server: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def run(
        self, *args: str, user: str | None = "alice", check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "JITGATE_URL": self.url, "XDG_CONFIG_HOME": str(self.data_dir / "cfg")}
        env.pop("JITGATE_TOKEN", None)
        if user:
            env["JITGATE_TOKEN"] = self.tokens[user]
        done = subprocess.run(
            [*JITGATE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{args} exited {done.returncode}: {done.stderr}")
        return done

    def json(self, *args: str, user: str = "alice") -> dict:  # type: ignore[type-arg]
        return json.loads(self.run(*args, "--json", user=user, check=True).stdout)  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def offline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JITGATE, *args], capture_output=True, text=True, timeout=60, check=False)


def start_server(
    data: Path,
    policy: Path,
    port: int,
    log_path: Path,
    *,
    workers: str = "1",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A real ``jitgate server`` on ``port``, returned once ``/healthz`` answers."""
    with log_path.open("a") as log_file:
        server = subprocess.Popen(
            [
                *JITGATE,
                "server",
                "--data-dir",
                str(data),
                "--policy",
                str(policy),
                "--listen",
                f"127.0.0.1:{port}",
                "--workers",
                workers,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)  # polling for the server to come up
    server.kill()
    server.wait()
    pytest.fail("server did not start: " + log_path.read_text())


USERS = {"alice": ["engineers"], "bob": ["sre-leads"], "carol": ["auditors"]}


@contextlib.contextmanager
def running_broker(tmp_path: Path, workers: str = "1", env: dict[str, str] | None = None) -> Iterator[Broker]:
    """A real ``jitgate server`` on a fresh data directory, with ``env`` added to its environment."""
    data = tmp_path / "data"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    tokens = {}
    for name, groups in USERS.items():
        flags = [f"--group={g}" for g in groups]
        done = offline("users", "add", name, *flags, "--data-dir", str(data), "--json")
        assert done.returncode == 0, done.stderr
        tokens[name] = json.loads(done.stdout)["token"]
    port = free_port()
    log_path = tmp_path / "server.log"
    holder = Broker(f"http://127.0.0.1:{port}", data, tokens)
    holder.server = start_server(data, policy, port, log_path, workers=workers, env=env)
    try:
        yield holder
    finally:
        holder.server.terminate()
        holder.server.wait(timeout=10)
    log = log_path.read_text()
    for token in tokens.values():
        assert token not in log, "an API token reached the server log"


@pytest.fixture
def broker(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A real ``jitgate server``; ``indirect`` parametrization gives its number of workers."""
    with running_broker(tmp_path, str(getattr(request, "param", 1))) as found:
        yield found


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def wait_for_both_schedulers_to_pass(broker: Broker, moment: datetime) -> None:
    """Until /healthz, reached on fresh connections, shows two workers whose lifecycle loops have
    each completed a pass that began after ``moment``: whatever either would do about a grant that
    ended then, it has done."""
    passed: set[int] = set()
    deadline = time.monotonic() + 20
    while len(passed) < 2 and time.monotonic() < deadline:
        health = httpx.get(f"{broker.url}/healthz", headers={"Connection": "close"}).json()
        began = health["scheduler"]["jitgate-lifecycle"]
        if began is not None and _instant(began) > moment:
            passed.add(health["worker"])
        else:
            time.sleep(0.05)  # polling for the next pass, not waiting for time
    assert len(passed) == 2, f"only workers {passed} were seen past {moment}"


def test_walk_through_request_approve_and_audit(broker: Broker) -> None:
    req = broker.json("request", "prod-shell", "--reason", "INC-42 disk full", "--for", "30m")
    assert req["state"] == "PENDING"
    own = broker.run("approve", req["id"])
    assert own.returncode == 5
    assert own.stderr.strip() == f"error: alice cannot review their own request {req['id']}"
    pending = broker.json("requests", "--reviewable", user="bob")
    assert [r["id"] for r in pending] == [req["id"]]
    approved = broker.json("approve", req["id"], "--comment", "go", user="bob")
    assert approved["state"] == "ACTIVE"
    assert approved["grant"]["expires_at"]
    shown = broker.json("show", req["id"])
    assert shown["grant"]["id"] == approved["grant"]["id"]
    table = broker.run("grants", check=True).stdout
    assert approved["grant"]["id"] in table
    twice = broker.run("approve", req["id"], user="bob")
    assert twice.returncode == 7
    assert len(twice.stderr.strip().splitlines()) == 1
    verify = offline("audit", "verify", "--data-dir", str(broker.data_dir))
    assert verify.returncode == 0, verify.stderr
    assert "intact" in verify.stdout


def test_a_grant_ends_by_itself_within_a_few_seconds(broker: Broker) -> None:
    req = broker.json("request", "stage-shell", "--for", "3s")
    assert req["state"] == "ACTIVE"
    expires = datetime.fromisoformat(req["grant"]["expires_at"].replace("Z", "+00:00"))
    deadline = time.monotonic() + 15
    state = "ACTIVE"
    while state == "ACTIVE" and time.monotonic() < deadline:
        time.sleep(0.25)
        state = broker.json("show", req["id"])["state"]
    assert state == "EXPIRED"
    assert datetime.now(UTC) >= expires
    events = broker.json("audit", "--action", "grant.expired", user="alice")
    assert events == []  # alice sees only her own acts; the broker ended it
    lag = broker.run("audit", "--action", "grant.expired", "--json", user=None)
    assert lag.returncode == 4


def test_a_grant_that_ended_while_the_broker_was_down_is_ended_when_it_starts_again(
    broker: Broker, tmp_path: Path
) -> None:
    req = broker.json("request", "stage-shell", "--for", "2s")
    assert req["state"] == "ACTIVE"
    assert broker.server is not None
    broker.server.kill()  # down hard: no shutdown work of any kind
    broker.server.wait(timeout=10)
    ends = _instant(req["grant"]["expires_at"])
    while datetime.now(UTC) <= ends:
        time.sleep(0.1)  # the end-to-end window of a few seconds passes while nothing runs
    with sqlite3.connect(broker.data_dir / "jitgate.db") as conn:
        (state,) = conn.execute("SELECT state FROM grants WHERE id = ?", (req["grant"]["id"],)).fetchone()
    assert state == "ACTIVE"  # nobody was there to end it
    broker.server = start_server(
        broker.data_dir, tmp_path / "policy.yaml", broker.port, tmp_path / "server.log"
    )
    deadline = time.monotonic() + 15
    while broker.json("show", req["id"])["state"] == "ACTIVE" and time.monotonic() < deadline:
        time.sleep(0.1)  # polling for the restarted scheduler
    assert broker.json("show", req["id"])["state"] == "EXPIRED"
    with sqlite3.connect(broker.data_dir / "jitgate.db") as conn:
        rows = conn.execute(
            "SELECT body FROM audit_events WHERE action = 'grant.expired' AND grant_id = ?",
            (req["grant"]["id"],),
        ).fetchall()
    assert len(rows) == 1
    lag_ms = json.loads(rows[0][0])["details"]["lag_ms"]
    assert lag_ms > 0  # ended late, by the restarted broker, and says so
    verify = offline("audit", "verify", "--data-dir", str(broker.data_dir))
    assert verify.returncode == 0, verify.stderr


@pytest.mark.parametrize("broker", [2], indirect=True)
def test_two_workers_share_one_database_one_audit_chain_and_one_expiry(broker: Broker) -> None:
    """``--workers 2``: certificates from both processes at once, one chain, each expiry once."""
    # Long enough for 48 certificates on a busy machine, short enough to wait for its end.
    req = broker.json("request", "stage-shell", "--for", "8s")
    key = broker.data_dir.parent / "id.pub"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key.with_suffix(""))], check=True
    )
    body = {"target": "stage-1", "public_key": key.read_text().strip()}
    headers = {"Authorization": f"Bearer {broker.tokens['alice']}"}

    def mint(_: int) -> httpx.Response:
        with httpx.Client(base_url=broker.url, headers=headers, timeout=30) as client:
            return client.post("/api/v1/ssh/certificates", json=body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(mint, range(48)))
    assert [a.status_code for a in answers] == [201] * 48, answers[0].text
    assert len({a.json()["serial"] for a in answers}) == 48
    deadline = time.monotonic() + 15
    while broker.json("show", req["id"])["state"] == "ACTIVE" and time.monotonic() < deadline:
        time.sleep(0.25)
    assert broker.json("show", req["id"])["state"] == "EXPIRED"
    wait_for_both_schedulers_to_pass(broker, _instant(req["grant"]["expires_at"]))
    with sqlite3.connect(broker.data_dir / "jitgate.db") as conn:
        (issued,) = conn.execute(
            "SELECT count(*) FROM audit_events WHERE action='credential.issued'"
        ).fetchone()
        (expired,) = conn.execute("SELECT count(*) FROM audit_events WHERE action='grant.expired'").fetchone()
    assert (issued, expired) == (48, 1)
    verify = offline("audit", "verify", "--data-dir", str(broker.data_dir))
    assert verify.returncode == 0, verify.stderr


def test_refusals_are_one_line_with_meaningful_exit_codes(broker: Broker) -> None:
    cases = [
        (("request", "nope"), 6, "no role named 'nope'"),
        (("request", "prod-shell", "--reason", "INC-1", "--for", "forever"), 3, "is not a duration"),
        (("request", "prod-shell", "--reason", "INC-1", "--for", "5h"), 5, "maximum of 4h"),
        (("request", "prod-shell", "--reason", "none"), 3, "must match"),
        (("revoke", "g-nope"), 6, "no grant g-nope"),
        (("extend", "g-nope", "--for", "1m"), 6, "no grant g-nope"),
    ]
    for args, code, message in cases:
        done = broker.run(*args)
        assert done.returncode == code, (args, done.stderr)
        assert message in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    garbage = broker.run("requests", user=None)
    assert garbage.returncode == 4
    assert "missing bearer token" in garbage.stderr


def test_huge_durations_and_extreme_dates_are_one_line_exit_3_and_audited(broker: Broker) -> None:
    grant = broker.json("request", "stage-shell", "--for", "10m")["grant"]["id"]
    cases = [
        (("request", "stage-shell", "--for", "99999999999w"), "longest duration accepted"),
        (("request", "stage-shell", "--for", "999999999d"), "longest duration accepted"),
        (("request", "stage-shell", "--for", "nan"), "is not a duration"),
        (("request", "stage-shell", "--for", "1m", "--start", "0001-01-01T00:00+14:00"), "range of dates"),
        (("request", "stage-shell", "--for", "1m", "--start", "9999-12-31T23:59-14:00"), "range of dates"),
        (("request", "stage-shell", "--for", "1m", "--start", "9999-12-31T23:59Z"), "90 days ahead"),
        (("request", "stage-shell", "--for", "1m", "--start", "2026-12-01T10:00"), "needs a timezone"),
        (("request", "stage-shell", "--for", "1m", "--start", "nan"), "not an ISO 8601 time"),
        (("extend", grant, "--for", "99999999999w"), "longest duration accepted"),
        (("extend", grant, "--for", "999999999d"), "longest duration accepted"),
        (("audit", "--since", "0001-01-01T00:00+14:00"), "range of dates"),
        (("audit", "--since", "2026-12-01T10:00"), "needs a timezone"),
    ]
    for args, message in cases:
        done = broker.run(*args)
        assert done.returncode == 3, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    export = offline(
        "audit", "export", "--data-dir", str(broker.data_dir), "--since", "0001-01-01T00:00+14:00"
    )
    assert export.returncode == 3, export.stderr
    assert len(export.stderr.strip().splitlines()) == 1
    with sqlite3.connect(broker.data_dir / "jitgate.db") as conn:
        attempted = [
            json.loads(body)["details"]["attempted"]
            for (body,) in conn.execute("SELECT body FROM audit_events WHERE action='access.refused'")
        ]
    # Every refused request and extension that reached the broker is on record; a --start with no
    # zone or no UTC form is refused by the command itself, before it asks.
    assert attempted.count("request.create") == 4
    assert attempted.count("grant.extend") == 2
    verify = offline("audit", "verify", "--data-dir", str(broker.data_dir))
    assert verify.returncode == 0, verify.stderr


def test_tampering_with_the_audit_log_is_detected(broker: Broker) -> None:
    broker.json("request", "stage-shell", "--for", "1m")
    with sqlite3.connect(broker.data_dir / "jitgate.db") as conn:
        conn.execute(
            "UPDATE audit_events SET body = replace(body, 'alice', 'mallory') WHERE action='request.created'"
        )
    done = offline("audit", "verify", "--data-dir", str(broker.data_dir))
    assert done.returncode == 10
    assert "BROKEN at record" in done.stderr


def stored_head(broker: Broker) -> tuple[int, str, str]:
    with sqlite3.connect(broker.data_dir / "jitgate.db") as conn:
        found: tuple[int, str, str] = conn.execute("SELECT seq, hash, signature FROM audit_head").fetchone()
    return found


def checkpointed_seq(broker: Broker) -> int:
    path = broker.data_dir / "keys" / "audit-checkpoint.json"
    return int(json.loads(path.read_text())["seq"]) if path.exists() else -1


def witnessed_seqs(path: Path) -> list[int]:
    return [json.loads(line)["seq"] for line in path.read_text().splitlines()] if path.exists() else []


def witness_sends(broker: Broker) -> float:
    metrics = httpx.get(f"{broker.url}/metrics").text
    return sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("jitgate_audit_witness_sent_total")
    )


def wait_for(what: str, done: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_rolling_the_log_back_to_an_old_signed_head_is_refused_and_reported(tmp_path: Path) -> None:
    """The database's administrator saves a signed head, lets a break-glass grant be recorded, cuts
    the records after the saved head and puts it back. Chain and head agree; the broker, the
    checkpoint, the witness file, the CLI and the API all say: rolled back."""
    heads = tmp_path / "witness" / "heads.jsonl"  # outside the data directory
    heads.parent.mkdir()
    env = {"JITGATE_AUDIT_WITNESS": str(heads), "JITGATE_AUDIT_WITNESS_SECONDS": "1"}
    with running_broker(tmp_path, env=env) as broker:
        broker.json("request", "stage-shell", "--for", "1m")
        saved = stored_head(broker)
        broker.json("request", "emergency-shell", "--for", "30m")  # break-glass: active at once
        newest = stored_head(broker)[0]
        wait_for("the checkpoint", lambda: checkpointed_seq(broker) == newest)
        wait_for("the witness", lambda: newest in witnessed_seqs(heads))
        intact = offline("audit", "verify", "--data-dir", str(broker.data_dir), "--witness", str(heads))
        assert intact.returncode == 0, intact.stderr
        with sqlite3.connect(broker.data_dir / "jitgate.db") as conn:
            conn.execute("DELETE FROM audit_events WHERE seq > ?", (saved[0],))
            conn.execute("UPDATE audit_head SET seq = ?, hash = ?, signature = ?", saved)
        rolled_back = f"audit log rolled back: head {newest} seen, database at {saved[0]}"

        # (1) The broker appends nothing more, and says so in one line and in its health.
        refused = broker.run("request", "stage-shell", "--for", "1m")
        assert refused.returncode == 9, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        assert rolled_back in refused.stderr
        assert stored_head(broker)[0] == saved[0]
        wait_for("degraded health", lambda: httpx.get(f"{broker.url}/healthz").json()["status"] == "degraded")
        assert rolled_back in httpx.get(f"{broker.url}/healthz").json()["audit_problem"]
        metrics = httpx.get(f"{broker.url}/metrics").text
        assert "jitgate_audit_chain_ok 0.0" in metrics

        # (2) Neither the checkpoint nor the witness follows the log back.
        sent, lines = witness_sends(broker), len(witnessed_seqs(heads))
        wait_for("another pass of the witness", lambda: witness_sends(broker) > sent)
        assert checkpointed_seq(broker) == newest
        assert set(witnessed_seqs(heads)[lines:]) == {newest}  # sent again, never the old head

        # (3) The CLI names the rollback; (4) the API gives the same verdict.
        done = offline("audit", "verify", "--data-dir", str(broker.data_dir))
        assert done.returncode == 10
        problem = f"audit log rolled back: head {newest} checkpointed, database at {saved[0]}"
        assert done.stderr.strip() == problem
        headers = {"Authorization": f"Bearer {broker.tokens['carol']}"}
        answer = httpx.get(f"{broker.url}/api/v1/audit/verify", headers=headers).json()
        assert (answer["ok"], answer["verdict"], answer["problem"]) == (False, "rolled_back", problem)

        # The witness remembers even when the data directory's checkpoint is lost with the database.
        (broker.data_dir / "keys" / "audit-checkpoint.json").rename(tmp_path / "checkpoint.saved")
        done = offline("audit", "verify", "--data-dir", str(broker.data_dir), "--witness", str(heads))
        assert done.returncode == 10
        assert (
            done.stderr.strip()
            == f"audit log rolled back: head {newest} witnessed in {heads}, database at {saved[0]}"
        )
        (tmp_path / "checkpoint.saved").rename(broker.data_dir / "keys" / "audit-checkpoint.json")


def test_offline_commands_checkpoint_what_they_append(tmp_path: Path) -> None:
    """``users add`` runs without a broker, so without its scheduler: it checkpoints itself. A
    broker started on the rolled-back log starts degraded: it ends access but grants nothing."""
    data = tmp_path / "data"
    assert offline("users", "add", "a1", "--data-dir", str(data)).returncode == 0
    with sqlite3.connect(data / "jitgate.db") as conn:
        saved = conn.execute("SELECT seq, hash, signature FROM audit_head").fetchone()
    assert offline("users", "add", "a2", "--data-dir", str(data)).returncode == 0
    with sqlite3.connect(data / "jitgate.db") as conn:
        conn.execute("DELETE FROM audit_events WHERE seq > ?", (saved[0],))
        conn.execute("UPDATE audit_head SET seq = ?, hash = ?, signature = ?", saved)
    refused = offline("users", "add", "a3", "--data-dir", str(data))
    assert refused.returncode == 10  # the audit log is broken
    assert len(refused.stderr.strip().splitlines()) == 1
    seen = f"audit log rolled back: head {saved[0] + 1} seen, database at {saved[0]}"
    assert refused.stderr.startswith(f"error: {seen}")
    done = offline("audit", "verify", "--data-dir", str(data))
    assert (done.returncode, done.stderr.strip()) == (
        10,
        f"audit log rolled back: head {saved[0] + 1} checkpointed, database at {saved[0]}",
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    # A broker started on it runs, so that access still ends on time, and says it is degraded.
    port = free_port()
    server = start_server(data, policy, port, tmp_path / "server.log")
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert health["status"] == "degraded"
    assert seen in health["audit_problem"]


def test_policy_check_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(POLICY.replace("max_duration: 30m", "max_duration: forever"))
    done = offline("policy", "check", str(bad))
    assert done.returncode == 3
    assert done.stderr.startswith("policy.yaml:10: roles[0].max_duration: 'forever' is not a duration")
    good = tmp_path / "good.yaml"
    good.write_text(POLICY)
    assert offline("policy", "check", str(good)).returncode == 0
    explained = offline("policy", "explain", "--user", "eve", "--role", "prod-shell", "--policy", str(good))
    assert explained.returncode == 5
    assert "eve may not request prod-shell" in explained.stdout


def test_a_locked_database_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert offline("users", "add", "alice", "--data-dir", str(data), "--json").returncode == 0
    holder = sqlite3.connect(data / "jitgate.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        env = {**os.environ, "JITGATE_SQLITE_BUSY_TIMEOUT_SECONDS": "0.2"}
        done = subprocess.run(
            [*JITGATE, "users", "add", "bob", "--data-dir", str(data)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert done.returncode == 9
    assert "locked" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    verify = offline("audit", "verify", "--data-dir", str(data))
    assert verify.returncode == 0, verify.stderr


def _children(pid: int) -> list[int]:
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat_file.parent.name))
    return found


def test_workers_refuse_a_port_in_use_and_stop_together_when_one_dies(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = offline("server", "--data-dir", str(data), "--policy", str(policy),
                       "--listen", f"127.0.0.1:{port}", "--workers", "2")  # fmt: skip
    assert busy.returncode == 3
    assert (
        busy.stderr.strip().splitlines()[-1]
        == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )

    port = free_port()
    server = subprocess.Popen(
        [*JITGATE, "server", "--data-dir", str(data), "--policy", str(policy),
         "--listen", f"127.0.0.1:{port}", "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while len(workers := [p for p in _children(server.pid) if "spawn_main" in _cmdline(p)]) < 2:
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)  # polling for the start, not waiting for time
        os.kill(workers[0], 9)
        _, stderr = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 9)
            server.communicate()
    assert server.returncode == 1
    assert "stopping the others" in stderr
    assert not any(Path(f"/proc/{pid}").exists() and _cmdline(pid) for pid in workers)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_workers_stop_when_the_server_process_is_killed_outright(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    port = free_port()
    server = subprocess.Popen(
        [*JITGATE, "server", "--data-dir", str(tmp_path / "data"), "--policy", str(policy),
         "--listen", f"127.0.0.1:{port}", "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while len(workers := [p for p in _children(server.pid) if "spawn_main" in _cmdline(p)]) < 2:
            assert server.poll() is None
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)  # polling for the start, not waiting for time
        for _ in range(8):  # both workers serving (each answers some of these)
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                assert time.monotonic() < deadline, "the workers did not serve"
                time.sleep(0.1)
        server.kill()
        server.wait()
        deadline = time.monotonic() + 20
        while any(_cmdline(pid) for pid in workers):
            assert time.monotonic() < deadline, "workers outlived the server process"
            time.sleep(0.1)  # polling for the workers to go
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, 9)


def test_users_and_tokens_commands(broker: Broker) -> None:
    reserved = offline("users", "add", "jitgate", "--data-dir", str(broker.data_dir))
    assert reserved.returncode == 3
    assert reserved.stderr.strip() == "error: 'jitgate' is reserved for the broker itself"
    made = offline(
        "users", "add", "root", "--admin", "--expires-in", "2d", "--data-dir", str(broker.data_dir), "--json"
    )
    assert made.returncode == 0, made.stderr
    broker.tokens["root"] = json.loads(made.stdout)["token"]
    too_long = offline("users", "add", "eve", "--expires-in", "400d", "--data-dir", str(broker.data_dir))
    assert too_long.returncode == 3

    (mine,) = broker.json("tokens", "list")
    assert mine["user"] == "alice"
    assert mine["state"] == "active"
    assert mine["id"] in broker.run("tokens", "list", check=True).stdout
    (bobs,) = broker.json("tokens", "list", "--user", "bob", user="root")
    assert broker.run("tokens", "revoke", bobs["id"]).returncode == 6  # alice: not hers, not admin
    assert broker.run("users", "disable", "bob").returncode == 5

    rotated = broker.json("tokens", "rotate", mine["id"], "--expires-in", "1d")
    assert rotated["replaces"] == mine["id"]
    stale = broker.run("roles")
    assert stale.returncode == 4
    assert stale.stderr.strip() == "error: API token revoked"
    broker.tokens["alice"] = rotated["token"]
    assert broker.run("roles").returncode == 0

    assert broker.json("users", "disable", "bob", user="root")["disabled"] is True
    assert broker.run("requests", user="bob").returncode == 4
    assert broker.json("users", "enable", "bob", user="root")["disabled"] is False
    assert broker.run("requests", user="bob").returncode == 0
    changed = broker.json("users", "groups", "alice", "--add", "oncall", "--remove", "engineers", user="root")
    assert changed["groups"] == ["oncall"]
    assert broker.run("request", "stage-shell", "--for", "5m").returncode == 5
    listed = broker.json("users", "list", user="root")
    assert [u["name"] for u in listed] == ["alice", "bob", "carol", "root"]
    trail = {e["action"] for e in broker.json("audit", "--limit", "500", user="root")}
    assert {"token.rotated", "user.disabled", "user.enabled", "user.groups_changed"} <= trail
    verify = offline("audit", "verify", "--data-dir", str(broker.data_dir))
    assert verify.returncode == 0, verify.stderr


@pytest.mark.parametrize("broker", [2], indirect=True)
def test_a_revoked_token_is_refused_by_every_worker_within_five_seconds(broker: Broker) -> None:
    headers = {"Authorization": f"Bearer {broker.tokens['alice']}"}
    for _ in range(20):  # both workers have the token in their caches
        assert httpx.get(f"{broker.url}/api/v1/whoami", headers=headers).status_code == 200
    (mine,) = broker.json("tokens", "list")
    broker.run("tokens", "revoke", mine["id"], check=True)
    revoked_at = time.monotonic()
    seen: list[tuple[float, int]] = []
    while time.monotonic() < revoked_at + 6.5:
        started = time.monotonic() - revoked_at
        seen.append((started, httpx.get(f"{broker.url}/api/v1/whoami", headers=headers).status_code))
    late = [status for started, status in seen if started >= 5.0]
    assert late, "no request was made after the bound"
    # Refused everywhere: 401, or 429 once the failed-authentication throttle has seen enough.
    assert set(late) <= {401, 429}, seen
