"""Approvals from Slack end to end: a real broker app with a Slack signing secret and user map, a
real HTTP server standing in for the webhook channel and Slack's ``response_url``, and requests
signed the way Slack signs them (computed here with ``hmac``, not with the broker's code)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.audit.query import AuditEvent, query
from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM, Identity
from jitgate.errors import InvalidInput
from jitgate.policy.model import SignInRequirement
from jitgate.runtime import Runtime, build_runtime
from jitgate.settings import Settings
from jitgate.workflow import requests as svc
from jitgate.workflow.users import add_user, set_disabled
from support import TEST_POLICY

SECRET = "slack-signing-secret-for-tests"
URL = "/api/v1/chat/slack/interactions"
PEOPLE = {
    "alice": ["engineers"],
    "bob": ["sre-leads", "engineers"],
    "erin": ["sre-leads"],
    "mallory": ["contractors"],
    "dave": ["sre-leads"],
}
USER_MAP = """\
# Slack account: jitgate user
T0001:U0BOB: bob
U0ERIN: erin
U0ALICE: alice
U0MALLORY: mallory
U0DAVE: dave
"""
ALICE = Identity("alice", frozenset({"engineers"}))
BOB = Identity("bob", frozenset({"sre-leads", "engineers"}))


class Received:
    """What an HTTP server was sent, by path, in order; waited for without polling."""

    def __init__(self) -> None:
        self._posts: list[tuple[str, dict[str, Any]]] = []
        self._changed = threading.Condition()

    def add(self, path: str, body: dict[str, Any]) -> None:
        with self._changed:
            self._posts.append((path, body))
            self._changed.notify_all()

    def wait(self, path_start: str, event: str | None = None, timeout: float = 10) -> dict[str, Any]:
        """The first body posted under ``path_start`` (with ``event``, if given), waiting ``timeout`` s."""

        def found() -> dict[str, Any] | None:
            return next(
                (
                    body
                    for path, body in self._posts
                    if path.startswith(path_start) and (event is None or body.get("event") == event)
                ),
                None,
            )

        with self._changed:
            if not self._changed.wait_for(lambda: found() is not None, timeout=timeout):
                raise AssertionError(f"nothing was posted to {path_start} ({event or 'any'})")
            body = found()
            assert body is not None
            return body


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    """An HTTP server keeping what is posted to it: webhooks at /hook, answers at /slack/…."""
    got = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.add(self.path, json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", got
    server.shutdown()
    server.server_close()


@pytest.fixture
def slack_runtime(tmp_path: Path, clock: FrozenClock, receiver: tuple[str, Received]) -> Iterator[Runtime]:
    base, _ = receiver
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY)
    users = tmp_path / "slack-users.yaml"
    users.write_text(USER_MAP)
    settings = Settings(
        data_dir=tmp_path / "data",
        policy_file=policy,
        public_url="https://jitgate.example",
        webhook_url=f"{base}/hook",
        slack_signing_secret=SECRET,
        slack_users_file=users,
        slack_response_urls=[f"{base}/slack/"],
    )
    rt = build_runtime(settings, clock=clock)
    for name, groups in PEOPLE.items():
        add_user(rt.ctx.db, rt.ctx.audit, clock, actor=SYSTEM.name, name=name, groups=groups)
    yield rt
    rt.ctx.db.dispose()


@pytest.fixture
def slack(slack_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(slack_runtime, run_scheduler=False)) as test_client:
        yield test_client


def click(
    request_id: str,
    *,
    user: str = "U0BOB",
    team: str = "T0001",
    action: str = "jitgate.approve",
    response_url: str = "https://hooks.slack.com/actions/T0001/1/x",
) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "someone", "team_id": team},
        "team": {"id": team, "domain": "example"},
        "actions": [
            {"action_id": action, "block_id": "jitgate.review", "value": request_id, "type": "button"}
        ],
        "response_url": response_url,
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    mac = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={mac}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def now_stamp(rt: Runtime) -> int:
    return int(rt.ctx.clock.now().timestamp())


def post(client: TestClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(URL, content=body, headers=headers)


def state_of(rt: Runtime, request_id: str) -> str:
    return str(svc.request_view_for(rt.ctx, request_id)["state"])


def reviews_of(rt: Runtime, request_id: str) -> list[dict[str, Any]]:
    return list(svc.request_view_for(rt.ctx, request_id)["reviews"])


def events(rt: Runtime, **filters: Any) -> list[AuditEvent]:
    with rt.ctx.db.read() as conn:
        return query(conn, limit=1000, **filters)


def pending(rt: Runtime, who: Identity = ALICE, role: str = "prod-shell") -> str:
    return str(svc.submit(rt.ctx, who, role=role, reason="INC-42 restart the web tier")["id"])


def test_a_signed_approve_activates_the_request_and_the_audit_names_the_slack_user(
    slack: TestClient, slack_runtime: Runtime, receiver: tuple[str, Received]
) -> None:
    base, got = receiver
    request_id = pending(slack_runtime)
    body = click(request_id, response_url=f"{base}/slack/actions/T0001/1")
    response = post(slack, body, signed(body, now_stamp(slack_runtime)))
    assert response.status_code == 200
    answer = response.json()
    assert answer["replace_original"] is True
    assert answer["text"].startswith("*Approved* by bob via Slack: alice's request")
    assert state_of(slack_runtime, request_id) == "ACTIVE"
    (approved,) = events(slack_runtime, action="review.approved", request_id=request_id)
    assert approved.actor == "bob"
    assert approved.details["comment"] == "via Slack"
    assert approved.details["via"] == {"channel": "slack", "slack_team": "T0001", "slack_user": "U0BOB"}
    # Slack takes the message to show from the response_url; the requester is told by the webhook.
    assert got.wait("/slack/") == answer
    granted = got.wait("/hook", "granted")
    assert granted["text"].startswith("Access granted to <@U0ALICE>: prod-shell")
    assert granted["requester"] == "alice"


def test_a_signed_deny_denies_and_the_requester_is_mentioned(
    slack: TestClient, slack_runtime: Runtime, receiver: tuple[str, Received]
) -> None:
    _, got = receiver
    request_id = pending(slack_runtime)
    body = click(request_id, user="U0ERIN", team="T0777", action="jitgate.deny")
    response = post(slack, body, signed(body, now_stamp(slack_runtime)))
    assert response.status_code == 200
    assert response.json()["text"].startswith("*Denied* by erin via Slack")
    assert state_of(slack_runtime, request_id) == "DENIED"
    denied = got.wait("/hook", "denied")
    assert denied["text"] == f"Request {request_id} of <@U0ALICE> for prod-shell denied by erin"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Slack-Signature": "v0=" + "0" * 64},
        {"X-Slack-Signature": ""},
        {"X-Slack-Request-Timestamp": ""},
        {"X-Slack-Request-Timestamp": "yesterday"},
    ],
)
def test_a_wrongly_signed_click_is_refused_with_401_and_changes_nothing(
    slack: TestClient, slack_runtime: Runtime, headers: dict[str, str]
) -> None:
    request_id = pending(slack_runtime)
    body = click(request_id)
    response = post(slack, body, {**signed(body, now_stamp(slack_runtime)), **headers})
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    assert "\n" not in response.json()["detail"]
    assert state_of(slack_runtime, request_id) == "PENDING"
    assert reviews_of(slack_runtime, request_id) == []


def test_a_click_signed_with_another_secret_is_refused(slack: TestClient, slack_runtime: Runtime) -> None:
    request_id = pending(slack_runtime)
    body = click(request_id)
    response = post(slack, body, signed(body, now_stamp(slack_runtime), secret="some-other-app"))
    assert response.status_code == 401
    assert state_of(slack_runtime, request_id) == "PENDING"


@pytest.mark.parametrize("seconds", [-301, 301, -3600])
def test_a_click_stamped_more_than_five_minutes_away_is_refused(
    slack: TestClient, slack_runtime: Runtime, seconds: int
) -> None:
    request_id = pending(slack_runtime)
    body = click(request_id)
    response = post(slack, body, signed(body, now_stamp(slack_runtime) + seconds))
    assert response.status_code == 401
    assert "more than 300 s" in response.json()["detail"]
    assert state_of(slack_runtime, request_id) == "PENDING"


def test_a_click_stamped_just_inside_the_window_is_believed(
    slack: TestClient, slack_runtime: Runtime, clock: FrozenClock
) -> None:
    request_id = pending(slack_runtime)
    body = click(request_id)
    headers = signed(body, now_stamp(slack_runtime))
    clock.advance(timedelta(seconds=300))
    assert post(slack, body, headers).status_code == 200
    assert state_of(slack_runtime, request_id) == "ACTIVE"


def test_a_replayed_click_is_refused_and_approves_only_once(
    slack: TestClient, slack_runtime: Runtime
) -> None:
    request_id = pending(slack_runtime, role="two-person")
    body = click(request_id)
    headers = signed(body, now_stamp(slack_runtime))
    first = post(slack, body, headers)
    assert first.status_code == 200
    assert "needs 1 more" in first.json()["text"]
    assert first.json()["replace_original"] is False  # the buttons stay for the second approver
    again = post(slack, body, headers)
    assert again.status_code == 401
    assert "replayed" in again.json()["detail"]
    assert [r["reviewer"] for r in reviews_of(slack_runtime, request_id)] == ["bob"]
    refused = events(slack_runtime, action="access.refused", request_id=request_id)
    assert [(e.actor, e.details["attempted"]) for e in refused] == [("bob", "review.approve")]
    assert refused[0].details["via"]["slack_user"] == "U0BOB"


def test_a_body_changed_after_signing_is_refused(slack: TestClient, slack_runtime: Runtime) -> None:
    mine = pending(slack_runtime)
    body = click(mine, action="jitgate.deny")
    headers = signed(body, now_stamp(slack_runtime))
    tampered = body.replace(b"jitgate.deny", b"jitgate.approve")
    assert post(slack, tampered, headers).status_code == 401
    assert state_of(slack_runtime, mine) == "PENDING"


def test_a_slack_user_not_in_the_map_is_refused_and_recorded(
    slack: TestClient, slack_runtime: Runtime
) -> None:
    request_id = pending(slack_runtime)
    body = click(request_id, user="U0NOBODY")
    response = post(slack, body, signed(body, now_stamp(slack_runtime)))
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_type"] == "ephemeral"
    assert "U0NOBODY is not linked to a jitgate user" in answer["text"]
    assert state_of(slack_runtime, request_id) == "PENDING"
    (refused,) = events(slack_runtime, action="access.refused", request_id=request_id)
    assert refused.actor == "slack:U0NOBODY"
    assert refused.details["via"] == {"channel": "slack", "slack_team": "T0001", "slack_user": "U0NOBODY"}
    assert "payload" not in json.dumps(refused.details)


def test_a_user_mapped_for_another_workspace_is_not_linked_here(
    slack: TestClient, slack_runtime: Runtime
) -> None:
    request_id = pending(slack_runtime)
    body = click(request_id, team="T0999")  # U0BOB is bob only in T0001
    response = post(slack, body, signed(body, now_stamp(slack_runtime)))
    assert "not linked" in response.json()["text"]
    assert state_of(slack_runtime, request_id) == "PENDING"


def test_approving_ones_own_request_from_slack_is_refused_by_policy(
    slack: TestClient, slack_runtime: Runtime
) -> None:
    request_id = pending(slack_runtime, who=BOB)
    body = click(request_id)
    response = post(slack, body, signed(body, now_stamp(slack_runtime)))
    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral"
    assert response.json()["text"].startswith("Refused:")
    assert state_of(slack_runtime, request_id) == "PENDING"
    (refused,) = events(slack_runtime, action="access.refused", request_id=request_id)
    assert (refused.actor, refused.details["attempted"]) == ("bob", "review.approve")
    assert refused.details["via"] == {"channel": "slack", "slack_team": "T0001", "slack_user": "U0BOB"}


def test_someone_who_may_not_approve_is_refused_from_slack(slack: TestClient, slack_runtime: Runtime) -> None:
    request_id = pending(slack_runtime)
    for user in ("U0MALLORY", "U0ALICE"):
        body = click(request_id, user=user)
        response = post(slack, body, signed(body, now_stamp(slack_runtime)))
        assert response.status_code == 200
        assert response.json()["text"].startswith("Refused:")
    assert state_of(slack_runtime, request_id) == "PENDING"


def test_a_disabled_user_is_refused_as_they_are_at_the_click(
    slack: TestClient, slack_runtime: Runtime
) -> None:
    request_id = pending(slack_runtime)
    set_disabled(slack_runtime.ctx, Identity("admin", admin=True), "dave", disabled=True)
    body = click(request_id, user="U0DAVE")
    response = post(slack, body, signed(body, now_stamp(slack_runtime)))
    assert "dave is disabled" in response.json()["text"]
    assert state_of(slack_runtime, request_id) == "PENDING"


def test_a_role_that_demands_a_fresh_sign_in_sends_the_approver_to_the_console(
    slack: TestClient, slack_runtime: Runtime
) -> None:
    policy = slack_runtime.ctx.policy
    demanding = tuple(
        r.model_copy(
            update={"requires": SignInRequirement.model_validate({"fresh_login": "10m", "for": ["approve"]})}
        )
        if r.name == "prod-shell"
        else r
        for r in policy.roles
    )
    slack_runtime.ctx.policies.replace(policy.model_copy(update={"roles": demanding}))
    request_id = pending(slack_runtime)
    body = click(request_id)
    response = post(slack, body, signed(body, now_stamp(slack_runtime)))
    assert response.status_code == 200
    text = response.json()["text"]
    assert f"<https://jitgate.example/ui/requests/{request_id}|open it in the console>" in text
    assert state_of(slack_runtime, request_id) == "PENDING"
    assert reviews_of(slack_runtime, request_id) == []
    (refused,) = events(slack_runtime, action="access.refused", request_id=request_id)
    assert refused.details["error"] == "step_up_required"


def test_the_console_link_button_is_acknowledged_and_does_nothing(
    slack: TestClient, slack_runtime: Runtime
) -> None:
    request_id = pending(slack_runtime)
    body = click(request_id, action="jitgate.open")
    response = post(slack, body, signed(body, now_stamp(slack_runtime)))
    assert (response.status_code, response.content) == (200, b"")
    assert state_of(slack_runtime, request_id) == "PENDING"


def test_an_oversized_body_is_refused_with_413(slack: TestClient, slack_runtime: Runtime) -> None:
    body = b"payload=" + b"x" * (64 * 1024 + 1)
    response = post(slack, body, signed(body, now_stamp(slack_runtime)))
    assert response.status_code == 413


def test_a_signed_body_that_is_not_a_click_is_a_400(slack: TestClient, slack_runtime: Runtime) -> None:
    body = urlencode({"payload": json.dumps({"type": "view_submission"})}).encode()
    response = post(slack, body, signed(body, now_stamp(slack_runtime)))
    assert response.status_code == 400
    assert response.json()["detail"] == "only block_actions interactions are handled"


def test_without_a_signing_secret_the_endpoint_does_not_exist(client: TestClient) -> None:
    body = click("r-0123456789ab")
    response = client.post(URL, content=body, headers=signed(body, 1_800_000_000))
    assert response.status_code == 404


def test_the_approval_webhook_carries_buttons_and_escaped_text(
    slack_runtime: Runtime, receiver: tuple[str, Received]
) -> None:
    _, got = receiver
    hostile = "INC-9 <!channel> <https://evil.example|login here> & more"
    request_id = svc.submit(slack_runtime.ctx, ALICE, role="prod-shell", reason=hostile)["id"]
    sent = got.wait("/hook", "approval_needed")
    assert "<" not in sent["text"]
    blocks = sent["blocks"]
    summary = json.dumps(blocks[:2])
    assert "&lt;!channel&gt; &lt;https://evil.example|login here&gt; &amp; more" in summary
    assert "<!channel>" not in summary
    assert "web-1, web-2" in summary
    assert "*Duration*\\n1h" in summary
    actions = blocks[-1]
    assert actions["type"] == "actions"
    approve, deny, console = actions["elements"]
    assert (approve["style"], approve["value"]) == ("primary", request_id)
    assert (deny["style"], deny["value"]) == ("danger", request_id)
    assert console["url"] == f"https://jitgate.example/ui/requests/{request_id}"


def test_a_bad_user_map_stops_the_broker_with_one_line(tmp_path: Path, clock: FrozenClock) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY)
    users = tmp_path / "slack-users.yaml"
    users.write_text("U0BOB: oidc:bob\n")
    settings = Settings(
        data_dir=tmp_path / "data", policy_file=policy, slack_signing_secret=SECRET, slack_users_file=users
    )
    with pytest.raises(InvalidInput, match=r"^slack-users.yaml:1: 'oidc:bob' is not a valid user name"):
        build_runtime(settings, clock=clock)
    with pytest.raises(InvalidInput, match="JITGATE_SLACK_USERS_FILE must be set"):
        build_runtime(Settings(data_dir=tmp_path / "data", policy_file=policy, slack_signing_secret=SECRET))


def test_a_source_sending_badly_signed_clicks_is_throttled_and_that_is_recorded(
    slack: TestClient, slack_runtime: Runtime
) -> None:
    body = click("r-0123456789ab")
    bad = {**signed(body, now_stamp(slack_runtime)), "X-Slack-Signature": "v0=" + "1" * 64}
    limit = slack_runtime.settings.auth_failures_per_source
    assert [post(slack, body, bad).status_code for _ in range(limit)] == [401] * limit
    assert post(slack, body, signed(body, now_stamp(slack_runtime))).status_code == 429
    (throttled,) = events(slack_runtime, action="auth.throttled")
    assert throttled.details["via"] == "slack"
    assert events(slack_runtime, action="access.refused") == []  # failures themselves are not recorded


def test_answers_go_only_to_allowed_response_urls(
    slack: TestClient, slack_runtime: Runtime, receiver: tuple[str, Received]
) -> None:
    base, got = receiver
    first, second = pending(slack_runtime), pending(slack_runtime)
    elsewhere = click(first, action="jitgate.deny", response_url=f"{base}/elsewhere/actions/1")
    assert post(slack, elsewhere, signed(elsewhere, now_stamp(slack_runtime))).status_code == 200
    allowed = click(second, action="jitgate.deny", response_url=f"{base}/slack/actions/2")
    assert post(slack, allowed, signed(allowed, now_stamp(slack_runtime))).status_code == 200
    # One sender posts in order: had the first answer been sent, it would have arrived first.
    assert second in got.wait("/slack/")["text"]
    with pytest.raises(AssertionError, match="nothing was posted"):
        got.wait("/elsewhere/", timeout=0)
    assert state_of(slack_runtime, first) == "DENIED"  # the click itself counted
