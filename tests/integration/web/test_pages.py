"""The web pages through a real app: sign in with a token, review, request, revoke, audit — with
the server-side session, cookie, CSRF (sign-in included) and escaping a browser-facing security
tool needs, and only messages the broker wrote."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM
from jitgate.runtime import Runtime
from jitgate.workflow.users import add_user


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
    (cookie,) = [c for c in response.headers.get_list("set-cookie") if c.startswith("jitgate_session=")]
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert attributes["httponly"] == "HttpOnly"
    assert attributes["samesite"] == "SameSite=strict"
    assert attributes["path"] == "Path=/ui"
    assert attributes["secure"] == "Secure"
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
        assert rid in bob.get("/ui/inbox").text
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


def test_pages_forbid_framing_and_admit_only_the_brokers_own_styles_and_scripts(
    runtime: Runtime, tokens: dict[str, str]
) -> None:
    with browser(runtime) as client:
        sign_in(client, tokens["alice"])
        headers = client.get("/ui/").headers
        policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
        assert policy["frame-ancestors"] == "'none'"
        assert policy["default-src"] == "'none'"
        assert policy["script-src"] == "'self'"  # no inline script, no other site's
        assert policy["style-src"] == "'self'"
        assert headers["x-content-type-options"] == "nosniff"


def test_the_console_serves_its_style_sheet_itself_and_nothing_else_from_static(client: TestClient) -> None:
    sheet = client.get("/ui/static/console.css")
    assert sheet.status_code == 200
    assert sheet.headers["content-type"].startswith("text/css")
    assert sheet.headers["x-content-type-options"] == "nosniff"
    for name in ("../routes.py", "..%2Froutes.py", "missing.css", "console.css.map"):
        assert client.get(f"/ui/static/{name}").status_code == 404


def session_rows(runtime: Runtime) -> int:
    import sqlalchemy as sa

    from jitgate.store.tables import web_sessions

    with runtime.ctx.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(web_sessions)).scalar_one())


def audit_count(runtime: Runtime) -> int:
    from jitgate.audit.query import query

    with runtime.ctx.db.read() as conn:
        return len(query(conn, limit=10_000))


@pytest.mark.parametrize("forgery", ["no form token", "wrong form token", "no login cookie", "other origin"])
def test_a_forged_sign_in_is_refused_before_the_token_is_looked_at(
    runtime: Runtime, tokens: dict[str, str], forgery: str
) -> None:
    with browser(runtime) as client:
        form = login_form(client)
        data = {"token": tokens["alice"], "csrf": form}
        headers = {}
        if forgery == "no form token":
            del data["csrf"]
        elif forgery == "wrong form token":
            data["csrf"] = "0" * 32
        elif forgery == "no login cookie":
            client.cookies.clear()
        else:
            headers["Origin"] = "https://evil.example"
        before = audit_count(runtime)
        refused = client.post("/ui/login", data=data, headers=headers, follow_redirects=False)
        assert refused.status_code == 403
        assert "stale or came from another site" in refused.text
        assert "jitgate_session" not in refused.headers.get("set-cookie", "")
        assert session_rows(runtime) == 0
        assert audit_count(runtime) == before
        assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"
    with runtime.ctx.db.read() as conn:
        from jitgate.store import accounts

        assert all(t.last_used_at is None for t in accounts.list_tokens(conn, user="alice"))


def test_the_cookie_holds_a_session_id_that_the_api_does_not_take(
    runtime: Runtime, tokens: dict[str, str]
) -> None:
    with browser(runtime) as client:
        sign_in(client, tokens["alice"])
        cookie = client.cookies["jitgate_session"]
        assert cookie.startswith("jgs_")
        assert tokens["alice"] not in cookie
        assert session_rows(runtime) == 1
        for headers in ({"Authorization": f"Bearer {cookie}"}, {"Cookie": f"jitgate_session={cookie}"}):
            refused = client.get("/api/v1/whoami", headers=headers)
            assert refused.status_code == 401


def test_signing_out_ends_the_session_on_the_server(runtime: Runtime, tokens: dict[str, str]) -> None:
    with browser(runtime) as client:
        csrf = sign_in(client, tokens["alice"])
        cookie = client.cookies["jitgate_session"]
        out = client.post("/ui/logout", data={"csrf": csrf})
        assert "You have signed out." in out.text
        assert session_rows(runtime) == 0
    with browser(runtime) as replay:
        again = replay.get("/ui/", headers={"Cookie": f"jitgate_session={cookie}"}, follow_redirects=False)
        assert again.headers["location"] == "/ui/login"


def test_a_session_ends_when_idle_after_its_maximum_or_with_its_token(
    runtime: Runtime, tokens: dict[str, str], clock: FrozenClock
) -> None:
    from datetime import timedelta

    from jitgate.workflow import tokens as token_flow

    with browser(runtime) as client:
        sign_in(client, tokens["alice"])
        clock.advance(timedelta(hours=8))
        assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"
    with browser(runtime) as client:
        sign_in(client, tokens["alice"])
        for _ in range(6):
            clock.advance(timedelta(hours=2) - timedelta(seconds=1))
            assert client.get("/ui/", follow_redirects=False).status_code == 200
        clock.advance(timedelta(seconds=7))
        assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"
    with browser(runtime) as client:
        sign_in(client, tokens["alice"])
        alice = runtime.tokens.authenticate(tokens["alice"])
        (mine,) = token_flow.list_tokens(runtime.ctx, alice)
        token_flow.revoke(runtime.ctx, alice, mine.id)
        assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"


def test_a_disabled_users_web_session_ends_at_once(runtime: Runtime, tokens: dict[str, str]) -> None:
    from jitgate.workflow import users

    admin = users.add_user(
        runtime.ctx.db,
        runtime.ctx.audit,
        runtime.ctx.clock,
        actor="test",
        name="root-admin",
        groups=[],
        admin=True,
    )[0]
    with browser(runtime) as client:
        sign_in(client, tokens["bob"])
        users.set_disabled(runtime.ctx, admin, "bob", disabled=True)
        assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"
        assert session_rows(runtime) == 0


@pytest.mark.parametrize(
    "query",
    ["error=<script>alert(1)</script>", "error=Your+token+leaked,+paste+it+at+evil.example", "notice=hi"],
)
def test_only_messages_the_broker_wrote_are_shown(
    runtime: Runtime, tokens: dict[str, str], query: str
) -> None:
    with browser(runtime) as client:
        login = client.get(f"/ui/login?{query}")
        assert 'role="alert"' not in login.text
        assert 'role="status"' not in login.text
        assert "evil.example" not in login.text
        assert "alert(1)" not in login.text
        sign_in(client, tokens["alice"])
        home = client.get(f"/ui/?{query}")
        assert 'role="alert"' not in home.text
        assert 'role="status"' not in home.text
        assert "evil.example" not in home.text
        assert "alert(1)" not in home.text
        assert "Your session has ended" in client.get("/ui/login?error=session_ended").text


def test_errors_under_the_console_carry_its_security_headers(
    runtime: Runtime, tokens: dict[str, str]
) -> None:
    with browser(runtime) as client:
        csrf = sign_in(client, tokens["alice"])
        unknown = client.get("/ui/no-such-page")
        incomplete = client.post("/ui/requests", data={"csrf": csrf})  # no role: the framework refuses it
    for answer, status in ((unknown, 404), (incomplete, 422)):
        assert answer.status_code == status
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
