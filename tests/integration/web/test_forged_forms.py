"""Every form under ``/ui`` refuses a forged submission and writes nothing.

The state-changing routes are found by walking the app's router: a new ``POST`` under ``/ui`` that
is not listed here fails the first test, so it cannot ship without being checked for CSRF. Each
route is then posted to in every forged shape (no token, a wrong one, another session's, the right
one from another site's ``Origin``), and the rows of every table a form could touch are counted
before and after. The same submission with the right token does go through, so a refusal is the
CSRF check's and not some other failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM
from jitgate.runtime import Runtime, build_runtime
from jitgate.settings import Settings
from jitgate.store import tables
from jitgate.workflow import requests
from jitgate.workflow.users import add_user
from support import TEST_POLICY
from support.admin_world import Furnished, furnish

ORIGIN = "https://jitgate.test"
FORGERIES = ["no token", "wrong token", "another session's token", "another site's origin"]
WATCHED = (
    tables.requests,
    tables.reviews,
    tables.grants,
    tables.revocations,
    tables.credentials,
    tables.audit_events,
    tables.web_sessions,
    tables.api_tokens,
    tables.user_keys,
    tables.gateway_sessions,
    tables.users,
)


@dataclass
class World:
    runtime: Runtime
    tokens: dict[str, str]
    pending: str
    grant: str
    furnished: Furnished
    start: dict[str, int]


@pytest.fixture
def world(tmp_path: Path, clock: FrozenClock) -> Iterator[World]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY)
    rt = build_runtime(Settings(data_dir=tmp_path / "data", policy_file=policy), clock=clock)
    tokens = {}
    for name, groups in {"alice": ["engineers"], "bob": ["sre-leads"], "root": []}.items():
        _, tokens[name] = add_user(
            rt.ctx.db, rt.ctx.audit, clock, actor=SYSTEM.name, name=name, groups=groups, admin=name == "root"
        )
    alice = rt.tokens.authenticate(tokens["alice"])
    pending = requests.submit(rt.ctx, alice, role="prod-shell", reason="INC-1", duration="30m")
    active = requests.submit(rt.ctx, alice, role="stage-shell", reason="", duration="10m")
    furnished = furnish(rt, alice, tmp_path / "keys")
    world = World(rt, tokens, pending["id"], active["grant"]["id"], furnished, {})
    world.start.update(_counts(world))
    yield world
    rt.ctx.db.dispose()


@dataclass(frozen=True)
class Form:
    """A form: who posts it (None: the sign-in form), where, what, and what a genuine post does.

    ``{pending}``, ``{grant}``, ``{alice_token}``, ``{alice_token_id}``, ``{key}`` and ``{session}``
    in the url and values are filled from the world. ``shows`` is a text the genuine post's page has.
    """

    who: str | None
    url: str
    data: dict[str, str]
    done: Callable[[World], bool]
    shows: str = ""

    def filled(self, world: World) -> tuple[str, dict[str, str]]:
        values = {
            "pending": world.pending,
            "grant": world.grant,
            "alice_token": world.tokens["alice"],
            "alice_token_id": _token_id(world, "alice"),
            "key": world.furnished.key,
            "session": world.furnished.session,
        }
        return self.url.format(**values), {k: v.format(**values) for k, v in self.data.items()}


CHECKED: dict[str, Form] = {
    "sign in": Form(None, "/ui/login", {"token": "{alice_token}"}, lambda w: _counts(w)["web_sessions"] == 2),
    "sign out": Form("alice", "/ui/logout", {}, lambda w: _counts(w)["web_sessions"] == 1),
    "request": Form(
        "alice",
        "/ui/requests",
        {"role": "stage-shell", "duration": "5m", "reason": ""},
        lambda w: _counts(w)["requests"] == w.start["requests"] + 1,
    ),
    "approve": Form(
        "bob",
        "/ui/requests/{pending}/review",
        {"verdict": "approve", "comment": "ok"},
        lambda w: _counts(w)["reviews"] == 1,
    ),
    "deny": Form(
        "bob",
        "/ui/requests/{pending}/review",
        {"verdict": "deny", "comment": "not now"},
        lambda w: _counts(w)["reviews"] == 1,
    ),
    "revoke": Form("alice", "/ui/grants/{grant}/revoke", {}, lambda w: _grant_state(w) == "REVOKED"),
    "extend": Form(
        "alice",
        "/ui/grants/{grant}/extend",
        {"duration": "5m", "reason": ""},
        lambda w: _counts(w)["requests"] == w.start["requests"] + 1,
    ),
    "verify the audit chain": Form("root", "/ui/audit/verify", {}, lambda _: True, "verification started"),
    "admin: revoke a grant": Form(
        "root", "/ui/admin/grants/{grant}/revoke", {"comment": "x"}, lambda w: _grant_state(w) == "REVOKED"
    ),
    "admin: sign a person out of the console": Form(
        "root", "/ui/admin/console/alice/end", {}, lambda w: _counts(w)["web_sessions"] == 1
    ),
    "admin: revoke a token": Form(
        "root", "/ui/admin/tokens/{alice_token_id}/revoke", {}, lambda w: _token_revoked(w, "alice")
    ),
    "admin: remove a key": Form(
        "root",
        "/ui/admin/keys/{key}/remove",
        {},
        lambda w: _counts(w)["user_keys"] == w.start["user_keys"] - 1,
    ),
    "admin: disable a user": Form(
        "root", "/ui/admin/users/bob/disabled", {"disabled": "yes"}, lambda w: _user_disabled(w, "bob")
    ),
    "admin: end a session": Form(
        "root",
        "/ui/admin/sessions/{session}/kill",
        {"reason": "x"},
        lambda w: _kill_requested(w),  # noqa: PLW0108 - defined below
    ),
}
ROUTES = {
    "/ui/login": ["sign in"],
    "/ui/logout": ["sign out"],
    "/ui/requests": ["request"],
    "/ui/requests/{request_id}/review": ["approve", "deny"],
    "/ui/grants/{grant_id}/revoke": ["revoke"],
    "/ui/grants/{grant_id}/extend": ["extend"],
    "/ui/audit/verify": ["verify the audit chain"],
    "/ui/admin/grants/{grant_id}/revoke": ["admin: revoke a grant"],
    "/ui/admin/tokens/{token_id}/revoke": ["admin: revoke a token"],
    "/ui/admin/console/{name}/end": ["admin: sign a person out of the console"],
    "/ui/admin/keys/{key_id}/remove": ["admin: remove a key"],
    "/ui/admin/sessions/{session_id}/kill": ["admin: end a session"],
    "/ui/admin/users/{name}/disabled": ["admin: disable a user"],
}
"""Every POST route under /ui and the forms above that post to it."""


def _counts(world: World) -> dict[str, int]:
    with world.runtime.ctx.db.read() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()) for t in WATCHED
        }


def _grant_state(world: World) -> str:
    with world.runtime.ctx.db.read() as conn:
        return str(
            conn.execute(
                sa.select(tables.grants.c.state).where(tables.grants.c.id == world.grant)
            ).scalar_one()
        )


def _token_row(world: World, user: str) -> sa.Row[Any]:
    with world.runtime.ctx.db.read() as conn:
        query = sa.select(tables.api_tokens).where(tables.api_tokens.c.user_name == user)
        return conn.execute(query).one()


def _token_id(world: World, user: str) -> str:
    return str(_token_row(world, user).id)


def _token_revoked(world: World, user: str) -> bool:
    return _token_row(world, user).revoked_at is not None


def _user_disabled(world: World, name: str) -> bool:
    with world.runtime.ctx.db.read() as conn:
        query = sa.select(tables.users.c.disabled).where(tables.users.c.name == name)
        return bool(conn.execute(query).scalar_one())


def _kill_requested(world: World) -> bool:
    with world.runtime.ctx.db.read() as conn:
        query = sa.select(tables.gateway_sessions.c.kill_requested_at).where(
            tables.gateway_sessions.c.id == world.furnished.session
        )
        return conn.execute(query).scalar_one() is not None


def _browser(world: World) -> TestClient:
    return TestClient(create_app(world.runtime, run_scheduler=False), base_url=ORIGIN)


def _form_token(client: TestClient, page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get(page).text)
    assert match is not None
    return match.group(1)


def _signed_in(world: World, who: str) -> tuple[TestClient, str]:
    client = _browser(world)
    client.__enter__()
    signed = client.post(
        "/ui/login", data={"token": world.tokens[who], "csrf": _form_token(client, "/ui/login")}
    )
    assert signed.status_code == 200
    return client, _form_token(client, "/ui/")


def _routes(routes: Iterable[Any]) -> Iterator[tuple[str, set[str]]]:
    """Every (path, methods) of the app, into included routers whichever way FastAPI keeps them."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route.path, set(route.methods)
        inner = getattr(route, "routes", None) or getattr(
            getattr(route, "original_router", None), "routes", ()
        )
        yield from _routes(inner)


def test_every_post_under_ui_is_checked_here(world: World) -> None:
    found = list(_routes(create_app(world.runtime, run_scheduler=False).routes))
    ui = [(path, methods) for path, methods in found if path.startswith("/ui")]
    assert ("/ui/", {"GET"}) in ui  # the walk does reach the pages
    assert {path for path, methods in ui if "POST" in methods} == set(ROUTES)
    assert sorted(name for names in ROUTES.values() for name in names) == sorted(CHECKED)
    assert [path for path, methods in ui if methods - {"GET", "HEAD", "POST"}] == []  # PUT, PATCH, DELETE


@pytest.mark.parametrize("forgery", FORGERIES)
@pytest.mark.parametrize("name", list(CHECKED))
def test_a_forged_form_is_refused_and_writes_nothing(world: World, name: str, forgery: str) -> None:
    form = CHECKED[name]
    clients: list[TestClient] = []
    try:
        other, other_token = _signed_in(world, "bob" if form.who == "alice" else "alice")
        clients.append(other)
        if form.who is None:
            client = _browser(world).__enter__()
            token = _form_token(client, "/ui/login")
            stranger = _browser(world).__enter__()
            clients.append(stranger)
            other_token = _form_token(stranger, "/ui/login")  # another browser's pre-session token
        else:
            client, token = _signed_in(world, form.who)
        clients.append(client)
        url, data = form.filled(world)
        headers = {"Origin": ORIGIN}
        if forgery == "wrong token":
            data["csrf"] = "0" * 32
        elif forgery == "another session's token":
            data["csrf"] = other_token
        elif forgery == "another site's origin":
            data["csrf"], headers["Origin"] = token, "https://evil.example"
        before = _counts(world)
        state_before = _grant_state(world)
        refused = client.post(url, data=data, headers=headers)

        assert "stale or came from another site" in refused.text
        assert _counts(world) == before
        assert _grant_state(world) == state_before
        if form.who is not None:
            assert client.get("/ui/", follow_redirects=False).status_code == 200  # still signed in

        genuine = client.post(url, data={**form.filled(world)[1], "csrf": token}, headers={"Origin": ORIGIN})
        assert "stale or came from another site" not in genuine.text
        assert form.shows in genuine.text
        assert form.done(world), _counts(world)
    finally:
        for c in clients:
            c.__exit__(None, None, None)
