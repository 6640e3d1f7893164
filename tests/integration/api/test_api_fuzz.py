"""Requests generated from the broker's own ``/openapi.json`` against a real ``jitgate server``.

Every operation is called with schema-conforming and schema-violating inputs as an admin, as an
ordinary user, without credentials and with a forged token. Whatever is sent, the broker never
answers 5xx, and every refusal is an RFC 9457 problem+json whose status fits a refusal.

The server runs with the failed-authentication throttle and the pending-request cap raised far
out of reach: both would otherwise answer 429/409 to most of the run and hide what the other
checks would say. They have tests of their own (``test_auth_throttle.py``, ``test_pending_cap.py``).

``JITGATE_FUZZ_EXAMPLES`` sets the examples per operation and mode (default 12: about a minute
for all four callers on two busy cores); set it to a few hundred for a long run. No 5xx is
allowed, 503 included: nothing here makes the broker unavailable.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation

from support.broker_process import serving
from support.keys import fresh_ed25519

JITGATE = [sys.executable, "-m", "jitgate"]
EXAMPLES = int(os.environ.get("JITGATE_FUZZ_EXAMPLES", "12"))
REFUSALS = {400, 401, 403, 404, 409, 413, 422, 429}
POLICY = """
targets:
  - {name: stage-1, kind: ssh, address: 127.0.0.1, labels: {env: stage}}
  - {name: web-1, kind: ssh, address: 127.0.0.1, port: 2222, labels: {env: prod}}
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
    ssh: {logins: [deploy, ops]}
    max_duration: 4h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
    reason: {required: true, pattern: '^INC-[0-9]+'}
"""
UNTHROTTLED = {
    "JITGATE_AUTH_FAILURES_PER_SOURCE": "1000000",
    "JITGATE_AUTH_FAILURE_WINDOW_SECONDS": "1",
    "JITGATE_MAX_PENDING_REQUESTS_PER_REQUESTER": "1000",
}


@dataclass
class Server:
    url: str
    tokens: dict[str, str]
    ids: dict[str, str]
    log: Path


def _add_user(data: Path, name: str, *flags: str) -> str:
    done = subprocess.run(
        [*JITGATE, "users", "add", name, *flags, "--data-dir", str(data), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(done.stdout)["token"])


def _seed_session(data: Path, policy: Path, grant_id: str) -> str:
    """A gateway session of alice's under ``grant_id``, ended with a shell recording, as the gateway
    records it on the server's data directory."""
    from jitgate.clock import SystemClock
    from jitgate.domain.identity import Identity
    from jitgate.policy.loader import load_policy
    from jitgate.runtime import open_audit, open_database
    from jitgate.settings import Settings
    from jitgate.store import queries as q
    from jitgate.workflow import sessions
    from jitgate.workflow.context import PolicyHolder, WorkflowContext

    settings = Settings(data_dir=data, policy_file=policy)
    db = open_database(settings)
    try:
        ctx = WorkflowContext(db, PolicyHolder(load_policy(policy)), open_audit(settings), SystemClock())
        with db.read() as conn:
            grant = q.get_grant(conn, grant_id)
        assert grant is not None
        alice = Identity("alice", frozenset({"engineers"}))
        found = sessions.open_session(
            ctx, alice, grant=grant, target="stage-1", login="deploy", credential_serial="1",
            source="127.0.0.1:1", gateway="fuzz",
        )  # fmt: skip
        cast = settings.recordings_dir / found / "0.cast"
        cast.parent.mkdir(parents=True)
        cast.write_text('{"version": 2, "width": 80, "height": 24}\n[0.1, "o", "$ "]\n')
        facts = {"channel": 0, "kind": "shell", "file": f"{found}/0.cast", "size": 1, "truncated": False}
        sessions.close_session(ctx, found, reason="done", bytes_in=1, bytes_out=1, recordings=[facts])
    finally:
        db.dispose()
    return found


def _seed(url: str, tokens: dict[str, str]) -> dict[str, str]:
    """A pending request, an active grant and a token, SSH key and user that may be revoked,
    removed and disabled (carol's), so that operations on ids reach past the lookup."""
    alice = {"Authorization": f"Bearer {tokens['alice']}"}
    pending = httpx.post(
        f"{url}/api/v1/requests",
        json={"role": "prod-shell", "reason": "INC-1", "duration": "1h"},
        headers=alice,
    )
    active = httpx.post(
        f"{url}/api/v1/requests", json={"role": "stage-shell", "duration": "20m"}, headers=alice
    )
    assert pending.status_code == active.status_code == 201, (pending.text, active.text)
    carol = {"Authorization": f"Bearer {tokens['carol']}"}
    listed = httpx.get(f"{url}/api/v1/tokens", headers=carol).json()
    key = httpx.post(f"{url}/api/v1/keys", json={"public_key": fresh_ed25519()}, headers=carol)
    assert key.status_code == 201, key.text
    return {
        "request_id": pending.json()["id"],
        "grant_id": active.json()["grant"]["id"],
        "token_id": listed[0]["id"],
        "key_id": key.json()["id"],
        "name": "carol",
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("fuzz")
    data, policy, log = tmp / "data", tmp / "policy.yaml", tmp / "server.log"
    policy.write_text(POLICY)
    tokens = {
        "admin": _add_user(data, "admin", "--admin"),
        "alice": _add_user(data, "alice", "--group=engineers"),
        "carol": _add_user(data, "carol", "--group=engineers"),
    }
    with serving(data, policy, log, UNTHROTTLED) as (url, _, _):
        ids = _seed(url, tokens)
        ids["session_id"] = _seed_session(data, policy, ids["grant_id"])
        yield Server(url, tokens, ids, log)


def problem_violations(status: int, headers: dict[str, list[str]], content: bytes) -> list[str]:
    """What is wrong with this answer, if anything: a 5xx, or a refusal that is not a fitting
    problem+json with ``type``, ``title``, ``status`` and ``detail``."""
    if status >= 500:
        return [f"server error {status}: {content[:300]!r}"]
    if status < 400:
        return []
    found = []
    if status not in REFUSALS:
        found.append(f"refused with {status}, not one of {sorted(REFUSALS)}")
    kind = (headers.get("content-type") or [""])[0]
    if not kind.startswith("application/problem+json"):
        found.append(f"{status} answered as {kind!r}, not application/problem+json")
        return found
    try:
        body = json.loads(content)
    except ValueError:
        return [*found, f"{status} problem body is not JSON: {content[:200]!r}"]
    missing = [k for k in ("type", "title", "status", "detail") if k not in body]
    if missing:
        found.append(f"{status} problem lacks {missing}: {body}")
    if body.get("status") != status:
        found.append(f"problem says status {body.get('status')}, the answer is {status}")
    return found


PUBLIC = {
    "GET /healthz",
    "GET /metrics",
    "GET /.well-known/jwks.json",
    "GET /api/v1/ca/ssh",
    "GET /api/v1/ca/ssh/krl",
}
"""Operations that answer without credentials: health, metrics and public keys."""
CREDENTIALS: dict[str, str | None] = {"admin": "admin", "user": "alice", "none": None, "forged": "forged"}


def _headers(server: Server, who: str) -> dict[str, str]:
    token = CREDENTIALS[who]
    if token is None:
        return {}
    bearer = server.tokens.get(token, "jg_" + "A" * 43)
    return {"Authorization": f"Bearer {bearer}"}


def _exercise(
    server: Server, operation: APIOperation, mode: GenerationMode, who: str, fixed: dict[str, str]
) -> list[str]:
    """Run generated cases against one operation; the first violation found, if any (collected
    rather than raised, so that one run reports every operation that misbehaves)."""
    headers = _headers(server, who)
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed or None)
    found: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        if who in {"none", "forged"}:
            case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        answer = case.call(base_url=server.url, headers=headers, timeout=30)
        problems = problem_violations(answer.status_code, answer.headers, answer.content)
        if who in {"none", "forged"} and answer.status_code < 400 and operation.label not in PUBLIC:
            problems.append(f"answered {answer.status_code} without a valid credential")
        if problems and not found:
            found.append(f"{operation.label} as {who} ({mode.value}): {case.as_curl_command()}: {problems}")

    with contextlib.suppress(Unsatisfiable):  # nothing of this operation can be made invalid
        run()
    return found


def operations(server: Server) -> list[APIOperation]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("who", list(CREDENTIALS))
def test_no_generated_request_gets_a_server_error_or_a_refusal_outside_problem_json(
    server: Server, who: str
) -> None:
    found: list[str] = []
    ops = operations(server)
    assert len(ops) > 20, [op.label for op in ops]
    for operation in ops:
        params = {p.name for p in operation.path_parameters}
        variants = [{}] + ([{p: server.ids[p] for p in params}] if params else [])
        for fixed in variants:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                found += _exercise(server, operation, mode, who, fixed)
    assert not found, "\n".join(found)
    log = server.log.read_text()
    assert "Traceback" not in log, log[-3000:]


def test_a_refusal_is_problem_json_with_a_title(server: Server) -> None:
    answer = httpx.get(f"{server.url}/api/v1/requests/r-missing", headers=_headers(server, "user"))
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert body["title"] == "Not Found"
    assert body["status"] == 404
    assert body["type"] == "about:blank"


@pytest.mark.parametrize("param", ["after_seq", "before_seq"])
def test_an_audit_position_past_any_sequence_number_is_a_422_not_a_500(server: Server, param: str) -> None:
    too_far = str(2**63)  # one past the largest sequence number; SQLite cannot even bind it
    answer = httpx.get(
        f"{server.url}/api/v1/audit", params={param: too_far}, headers=_headers(server, "admin")
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["detail"].startswith(f"query.{param}: ")
    assert len(answer.json()["detail"].splitlines()) == 1
    last = httpx.get(
        f"{server.url}/api/v1/audit", params={param: str(2**63 - 1)}, headers=_headers(server, "admin")
    )
    assert last.status_code == 200, last.text
