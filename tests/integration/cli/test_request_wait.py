"""``jitgate request ROLE --wait`` as a CI job runs it: the job's platform token in JITGATE_TOKEN,
a real ``jitgate server`` process, a real issuer serving its keys over HTTP. It exits 0 and prints
the grant once the access is usable; 5 with one line when an approver denies; 11 with one line
when it gives up waiting; 4 with one line when the token is not the workload's.

Usable means the grant is ACTIVE *and* its elevations of existing accounts are applied: that is
checked against a broker served in this process whose directory target is the switchable
elevation of ``support/providers.py`` (no elevating provider runs in a bare server process here).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from jitgate.api.app import create_app
from jitgate.runtime import build_runtime
from jitgate.settings import Settings
from support.broker_process import JITGATE, free_port, serving
from support.ci_issuer import CiIssuer, ci_issuer
from support.providers import SwitchableElevation

GROUP = "cn=deployers,ou=groups,dc=example,dc=org"
TARGETS = """
targets:
  - {name: web-1, kind: ssh, address: 127.0.0.1}
"""
DIRECTORY_TARGET = """
  - name: corp
    kind: ldap
    url: ldap://127.0.0.1:9
    bind_dn: cn=admin,dc=example,dc=org
    bind_password_env: CORP_LDAP_BIND_PASSWORD
    user_dn: "uid={user},ou=people,dc=example,dc=org"
"""
ROLES = """
roles:
  - name: deploy
    targets: {names: [web-1]}
    ssh: {logins: [deploy]}
    max_duration: 30m
    requesters: [user:workload:orders-deploy]
    approval: auto
  - name: migrate
    targets: {names: [web-1]}
    ssh: {logins: [migrate]}
    max_duration: 15m
    requesters: [user:workload:orders-deploy]
    approvers: [user:bob]
"""
DIRECTORY_ROLE = f"""
  - name: join-deployers
    targets: {{names: [corp]}}
    ldap: {{groups: ["{GROUP}"], existing_account: {{"workload:orders-deploy": ci-orders}}}}
    max_duration: 15m
    requesters: [user:workload:orders-deploy]
    approval: auto
"""
WORKLOADS = """
workloads:
  - name: orders-deploy
    issuer: {issuer}
    audience: jitgate
    claims: {{repository: acme/orders, ref: refs/heads/main}}
"""


@pytest.fixture(scope="module")
def ci() -> Iterator[CiIssuer]:
    with ci_issuer() as running:
        yield running


def write_policy(directory: Path, issuer: str, *, with_directory: bool = False) -> Path:
    """The policy; ``with_directory`` adds a directory target and a role that joins a group there."""
    extra_target, extra_role = (DIRECTORY_TARGET, DIRECTORY_ROLE) if with_directory else ("", "")
    policy = directory / "policy.yaml"
    policy.write_text(TARGETS + extra_target + ROLES + extra_role + WORKLOADS.format(issuer=issuer))
    return policy


def job_token(ci: CiIssuer, **claims: Any) -> str:
    return ci.sign(ci.github_job(environment=None, **claims))


def jitgate(url: str, token: str, *args: str, home: Path) -> subprocess.Popen[str]:
    """The CLI as a job runs it: address and token from the environment, nothing saved."""
    env = {**os.environ, "JITGATE_URL": url, "JITGATE_TOKEN": token, "XDG_CONFIG_HOME": str(home)}
    return subprocess.Popen(
        [*JITGATE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finished(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for(what: str, done: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling the broker for a state, not waiting for time to pass


@pytest.fixture(scope="module")
def server(ci: CiIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real ``jitgate server`` trusting the CI issuer; yields its URL and approver bob's token."""
    tmp = tmp_path_factory.mktemp("broker")
    data = tmp / "data"
    added = subprocess.run(
        [*JITGATE, "users", "add", "bob", "--data-dir", str(data), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    bob = json.loads(added.stdout)["token"]
    with serving(data, write_policy(tmp, ci.issuer), tmp / "server.log", {}) as (url, _, _):
        yield url, bob


def test_an_auto_approved_role_exits_0_and_prints_the_grant(
    server: tuple[str, str], ci: CiIssuer, tmp_path: Path
) -> None:
    url, _ = server
    code, out, err = finished(jitgate(url, job_token(ci), "request", "deploy", "--wait", home=tmp_path))
    assert (code, err) == (0, "")
    assert "workload:orders-deploy asks for deploy" in out
    assert "grant g-" in out
    assert "ACTIVE" in out
    code, out, _ = finished(
        jitgate(url, job_token(ci), "request", "deploy", "--wait", "--json", home=tmp_path)
    )
    assert code == 0
    answer = json.loads(out)
    assert answer["grant"]["state"] == "ACTIVE"
    assert answer["grant"]["elevations_pending"] == 0


def test_a_denied_request_exits_5_with_one_line(
    server: tuple[str, str], ci: CiIssuer, tmp_path: Path
) -> None:
    url, bob = server
    waiting = jitgate(
        url, job_token(ci), "request", "migrate", "--reason", "schema 12", "--wait", home=tmp_path
    )
    approver = {"Authorization": f"Bearer {bob}"}
    found: list[dict[str, Any]] = []

    def pending() -> bool:
        found[:] = httpx.get(f"{url}/api/v1/requests", params={"reviewable": True}, headers=approver).json()
        return bool(found)

    wait_for("the job's request", pending)
    (request,) = found
    assert request["requester"] == "workload:orders-deploy"
    denied = httpx.post(
        f"{url}/api/v1/requests/{request['id']}/reviews",
        json={"verdict": "deny", "comment": "not during the freeze"},
        headers=approver,
    )
    assert denied.status_code == 200
    code, out, err = finished(waiting)
    assert code == 5
    assert err == f"error: request {request['id']} was denied by bob: not during the freeze\n"
    assert "DENIED" in out


def test_giving_up_waiting_exits_11_with_one_line_and_leaves_the_request_open(
    server: tuple[str, str], ci: CiIssuer, tmp_path: Path
) -> None:
    url, bob = server
    started = time.monotonic()
    process = jitgate(
        url, job_token(ci), "request", "migrate", "--wait", "--wait-timeout", "1.5", home=tmp_path
    )
    code, _, err = finished(process)
    assert time.monotonic() - started < 30
    assert code == 11
    assert err.count("\n") == 1
    assert err.startswith("error: still waiting after 1.5s: request r-")
    assert "is PENDING (it stays open; jitgate cancel r-" in err
    request_id = err.split("request ")[1].split(" ")[0]
    mine = httpx.get(f"{url}/api/v1/requests/{request_id}", headers={"Authorization": f"Bearer {bob}"})
    assert mine.json()["state"] == "PENDING"


def test_a_token_of_another_branch_exits_4_with_one_line(
    server: tuple[str, str], ci: CiIssuer, tmp_path: Path
) -> None:
    url, _ = server
    feature = job_token(ci, ref="refs/heads/feature")
    code, out, err = finished(jitgate(url, feature, "request", "deploy", "--wait", home=tmp_path))
    assert code == 4
    assert out == ""
    assert err == f"error: workload token from {ci.issuer} matches no workload rule\n"


class RequestPolls:
    """The app, counting the reads of a request's state the CLI makes while it waits."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.count = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"].startswith("/api/v1/requests/")
        ):
            self.count += 1
        await self.app(scope, receive, send)


POLLS: dict[str, RequestPolls] = {}
"""The counter of each in-process broker, by its URL."""


@contextmanager
def broker_in_this_process(ci: CiIssuer, tmp_path: Path, directory: SwitchableElevation) -> Iterator[str]:
    """The broker served by uvicorn in a thread, its scheduler running, ``directory`` as kind ldap."""
    settings = Settings(
        data_dir=tmp_path / "data",
        policy_file=write_policy(tmp_path, ci.issuer, with_directory=True),
        scheduler_poll_seconds=0.1,
        revocation_backoff_seconds=0.2,
        revocation_backoff_max_seconds=0.5,
    )
    rt = build_runtime(settings)
    rt.ctx.providers["ldap"] = directory  # type: ignore[assignment]
    port = free_port()
    polls = POLLS[f"http://127.0.0.1:{port}"] = RequestPolls(create_app(rt))
    server = uvicorn.Server(uvicorn.Config(polls, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for("the broker to listen", lambda: server.started)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        rt.ctx.db.dispose()


def grant_of(url: str, token: str) -> dict[str, Any]:
    found = httpx.get(f"{url}/api/v1/grants", headers={"Authorization": f"Bearer {token}"}).json()
    return found[0] if found else {}


def test_it_exits_0_only_once_the_elevation_is_applied(ci: CiIssuer, tmp_path: Path) -> None:
    directory = SwitchableElevation({"ci-orders": set()})
    directory.up = False
    with broker_in_this_process(ci, tmp_path, directory) as url:
        token = job_token(ci)
        waiting = jitgate(url, token, "request", "join-deployers", "--wait", home=tmp_path)
        wait_for("the grant", lambda: grant_of(url, token).get("state") == "ACTIVE")
        assert grant_of(url, token)["elevations_pending"] == 1
        asked = POLLS[url].count
        wait_for("the CLI to read the request twice more", lambda: POLLS[url].count >= asked + 2)
        assert waiting.poll() is None  # ACTIVE is not enough while the group is not joined
        directory.up = True
        code, out, err = finished(waiting)
    assert (code, err) == (0, "")
    assert "ACTIVE" in out
    assert directory.accounts["ci-orders"] == {GROUP}


def test_a_grant_ended_by_a_refused_elevation_exits_7_with_one_line(ci: CiIssuer, tmp_path: Path) -> None:
    directory = SwitchableElevation({})  # no entry for the job's account
    directory.up = False  # so the request is not refused up front
    with broker_in_this_process(ci, tmp_path, directory) as url:
        token = job_token(ci)
        waiting = jitgate(url, token, "request", "join-deployers", "--wait", home=tmp_path)
        wait_for("the grant", lambda: grant_of(url, token).get("state") == "ACTIVE")
        directory.up = True
        code, _, err = finished(waiting)
        grant = grant_of(url, token)
    assert code == 7
    assert err == f"error: grant {grant['id']} ended (revoked) before its access was ready\n"


def test_giving_up_on_an_elevation_not_applied_says_so(ci: CiIssuer, tmp_path: Path) -> None:
    directory = SwitchableElevation({"ci-orders": set()})
    directory.up = False
    with broker_in_this_process(ci, tmp_path, directory) as url:
        token = job_token(ci)
        args = ("request", "join-deployers", "--wait", "--wait-timeout", "1")
        code, _, err = finished(jitgate(url, token, *args, home=tmp_path))
    assert code == 11
    assert err.count("\n") == 1
    assert "is ACTIVE but 1 elevation of existing accounts not applied yet" in err
