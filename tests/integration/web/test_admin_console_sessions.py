"""Admins see who is signed in to the console and can sign a person out everywhere at once: the
one way to end the console sessions of an identity from the provider, which has no user to
disable. Grants and tokens stay; the ending is audited; nobody else may do it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.audit.query import query
from jitgate.auth.sessions import WebSessions
from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM, Identity
from jitgate.runtime import Runtime
from jitgate.workflow.users import add_user

OIDC_BOB = Identity(
    name="oidc:bob", groups=frozenset({"sre-leads"}), source="oidc", display_name="Bob \u202eLead"
)


@pytest.fixture
def tokens(runtime: Runtime, clock: FrozenClock) -> dict[str, str]:
    out = {}
    for name, admin in {"alice": False, "root": True}.items():
        _, out[name] = add_user(
            runtime.ctx.db, runtime.ctx.audit, clock, actor=SYSTEM.name, name=name, groups=[], admin=admin
        )
    return out


def browser(runtime: Runtime) -> TestClient:
    return TestClient(create_app(runtime, run_scheduler=False), base_url="https://jitgate.test")


def sign_in(client: TestClient, token: str) -> str:
    form = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/ui/login").text)
    assert form is not None
    client.post("/ui/login", data={"token": token, "csrf": form.group(1)})
    page = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/ui/").text)
    assert page is not None
    return page.group(1)


@pytest.fixture
def bob_at_provider(runtime: Runtime) -> Iterator[TestClient]:
    """oidc:bob's browser, as a sign-in at the provider leaves it."""

    sessions = WebSessions(
        runtime.ctx.db, runtime.ctx.clock, idle=timedelta(hours=8), maximum=timedelta(hours=12)
    )
    session_id = sessions.open(OIDC_BOB, None)
    with browser(runtime) as client:
        client.cookies.set("jitgate_session", session_id, domain="jitgate.test", path="/ui")
        yield client


def test_an_admin_signs_an_identity_from_the_provider_out_everywhere(
    runtime: Runtime, tokens: dict[str, str], bob_at_provider: TestClient
) -> None:
    assert bob_at_provider.get("/ui/", follow_redirects=False).status_code == 200
    with browser(runtime) as root:
        csrf = sign_in(root, tokens["root"])
        listed = root.get("/ui/admin/console").text
        assert "oidc:bob" in listed
        assert "identity provider" in listed
        assert "\u202e" not in listed  # a disguising display name is shown escaped
        ended = root.post("/ui/admin/console/oidc:bob/end", data={"csrf": csrf})
        assert "1 console session of oidc:bob ended" in ended.text
    refused = bob_at_provider.get("/ui/", follow_redirects=False)
    assert refused.status_code == 303
    assert refused.headers["location"].startswith("/ui/login")
    with runtime.ctx.db.read() as conn:
        (record,) = query(conn, action="user.sessions_ended")
    assert (record.actor, record.details) == ("root", {"name": "oidc:bob", "sessions": 1})


def test_someone_without_a_session_is_a_clear_refusal_and_nothing_is_recorded_as_done(
    runtime: Runtime, tokens: dict[str, str]
) -> None:
    with browser(runtime) as root:
        csrf = sign_in(root, tokens["root"])
        answer = root.post("/ui/admin/console/oidc:nobody/end", data={"csrf": csrf})
    assert "oidc:nobody has no console session" in answer.text
    with runtime.ctx.db.read() as conn:
        assert [e.action for e in query(conn, action="user.sessions_ended")] == []


def test_a_non_admin_may_neither_see_nor_end_console_sessions(
    runtime: Runtime, tokens: dict[str, str], bob_at_provider: TestClient
) -> None:
    with browser(runtime) as alice:
        csrf = sign_in(alice, tokens["alice"])
        assert alice.get("/ui/admin/console").status_code == 403
        assert alice.post("/ui/admin/console/oidc:bob/end", data={"csrf": csrf}).status_code == 403
    assert bob_at_provider.get("/ui/", follow_redirects=False).status_code == 200
