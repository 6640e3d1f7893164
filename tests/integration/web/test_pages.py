"""The web pages through a real app: sign in with a token, review, request, revoke, audit — with
the server-side session, cookie, CSRF (sign-in included) and escaping a browser-facing security
tool needs, and only messages the broker wrote."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM
from jitgate.runtime import Runtime, build_runtime
from jitgate.settings import Settings
from jitgate.workflow.users import add_user
from support import TEST_POLICY


@pytest.fixture
def runtime(tmp_path: Path, clock: FrozenClock) -> Iterator[Runtime]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY)
    rt = build_runtime(Settings(data_dir=tmp_path / "data", policy_file=policy), clock=clock)
    yield rt
    rt.ctx.db.dispose()


@pytest.fixture
def tokens(runtime: Runtime, clock: FrozenClock) -> dict[str, str]:
    out = {}
    for name, groups in {"alice": ["engineers"], "bob": ["sre-leads"]}.items():
        _, out[name] = add_user(
            runtime.ctx.db, runtime.ctx.audit, clock, actor=SYSTEM.name, name=name, groups=groups
        )
    return out


def browser(runtime: Runtime) -> TestClient:
    return TestClient(create_app(runtime, run_scheduler=False), base_url="https://jitgate.test")


def login_form(client: TestClient) -> str:
    page = client.get("/ui/login")
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert match is not None
    return match.group(1)


def sign_in(client: TestClient, token: str) -> str:
    form = login_form(client)
    response = client.post("/ui/login", data={"token": token, "csrf": form}, follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    assert "Secure" in cookie
    page = client.get("/ui/")
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert match is not None
    return match.group(1)


def test_pages_need_a_session(runtime: Runtime) -> None:
    with browser(runtime) as client:
        assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"
        bad = client.post("/ui/login", data={"token": "jg_" + "x" * 43, "csrf": login_form(client)})
        assert bad.status_code == 401
        assert "unknown API token" in bad.text


def test_request_review_and_revoke_in_the_browser(runtime: Runtime, tokens: dict[str, str]) -> None:
    with browser(runtime) as alice:
        csrf = sign_in(alice, tokens["alice"])
        done = alice.post(
            "/ui/requests",
            data={
                "csrf": csrf,
                "role": "prod-shell",
                "duration": "30m",
                "reason": "INC-5 <script>x</script>",
            },
        )
        assert "is PENDING" in done.text
        assert "<script>x</script>" not in done.text
        assert "&lt;script&gt;x&lt;/script&gt;" in done.text
        rid = re.search(r"request (r-[0-9a-f]+) is PENDING", done.text).group(1)  # type: ignore[union-attr]
        own = alice.post(f"/ui/requests/{rid}/review", data={"csrf": csrf, "verdict": "approve"})
        assert "cannot review their own request" in own.text
    with browser(runtime) as bob:
        csrf = sign_in(bob, tokens["bob"])
        assert rid in bob.get("/ui/").text
        approved = bob.post(
            f"/ui/requests/{rid}/review", data={"csrf": csrf, "verdict": "approve", "comment": "ok"}
        )
        assert f"request {rid} is ACTIVE" in approved.text
    with browser(runtime) as alice:
        csrf = sign_in(alice, tokens["alice"])
        page = alice.get("/ui/")
        gid = re.search(r"<code>(g-[0-9a-f]+)</code>", page.text).group(1)  # type: ignore[union-attr]
        assert "30m" in page.text
        revoked = alice.post(f"/ui/grants/{gid}/revoke", data={"csrf": csrf})
        assert f"grant {gid} revoked" in revoked.text
        assert "grant.revoked" in alice.get("/ui/audit").text


def test_forms_without_the_sessions_csrf_token_are_refused(runtime: Runtime, tokens: dict[str, str]) -> None:
    with browser(runtime) as client:
        sign_in(client, tokens["alice"])
        forged = client.post("/ui/requests", data={"csrf": "0" * 32, "role": "stage-shell", "duration": "5m"})
        assert "stale or came from another site" in forged.text
        assert "is ACTIVE" not in forged.text


def test_pages_forbid_framing_and_scripts(runtime: Runtime, tokens: dict[str, str]) -> None:
    with browser(runtime) as client:
        sign_in(client, tokens["alice"])
        headers = client.get("/ui/").headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src" not in headers["content-security-policy"]  # default-src 'none' covers scripts
        assert headers["x-content-type-options"] == "nosniff"
