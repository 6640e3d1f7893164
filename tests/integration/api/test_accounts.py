"""API tokens and users through a real app: tokens end, can be listed, revoked and rotated; users
can be disabled, enabled and regrouped by admins; every change is audited and takes effect in
the process that made it at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from jitgate.audit.query import query
from jitgate.clock import FrozenClock
from jitgate.runtime import Runtime
from jitgate.store import accounts
from jitgate.workflow.users import add_user


def add(runtime: Runtime, name: str, groups: list[str], *, admin: bool = False, **kw: timedelta) -> str:
    ctx = runtime.ctx
    return add_user(ctx.db, ctx.audit, ctx.clock, actor="test", name=name, groups=groups, admin=admin, **kw)[
        1
    ]


@pytest.fixture
def tokens(runtime: Runtime) -> dict[str, str]:
    return {
        "alice": add(runtime, "alice", ["engineers"]),
        "bob": add(runtime, "bob", ["sre-leads"]),
        "admin": add(runtime, "admin", [], admin=True),
    }


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def actions(runtime: Runtime) -> list[str]:
    with runtime.ctx.db.read() as conn:
        return [e.action for e in query(conn, limit=1000)]


def test_a_token_is_refused_once_it_has_expired(
    runtime: Runtime, client: TestClient, clock: FrozenClock
) -> None:
    fresh = add(runtime, "carol", ["engineers"], expires_in=timedelta(hours=1))
    used = add(runtime, "dave", ["engineers"], expires_in=timedelta(hours=1))
    assert client.get("/api/v1/whoami", headers=auth(used)).status_code == 200  # now in the cache
    clock.advance(timedelta(hours=1))
    for token in (fresh, used):
        refused = client.get("/api/v1/whoami", headers=auth(token))
        assert refused.status_code == 401
        assert refused.json()["detail"].startswith("API token expired")


def test_a_tokens_lifetime_is_bounded(runtime: Runtime) -> None:
    from jitgate.errors import InvalidInput

    with pytest.raises(InvalidInput, match="at most 365 days"):
        add(runtime, "erin", [], expires_in=timedelta(days=366))


def test_users_list_revoke_and_rotate_their_own_tokens(
    runtime: Runtime, client: TestClient, tokens: dict[str, str], clock: FrozenClock
) -> None:
    mine = client.get("/api/v1/tokens", headers=auth(tokens["alice"])).json()
    assert [(t["user"], t["state"]) for t in mine] == [("alice", "active")]
    assert mine[0]["expires_at"] == (clock.now() + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    assert "token" not in mine[0]
    assert client.get("/api/v1/tokens?user=bob", headers=auth(tokens["alice"])).status_code == 403
    bobs = client.get("/api/v1/tokens?user=bob", headers=auth(tokens["admin"])).json()
    assert (
        client.post(f"/api/v1/tokens/{bobs[0]['id']}/revoke", headers=auth(tokens["alice"])).status_code
        == 404
    )
    assert client.get("/api/v1/whoami", headers=auth(tokens["bob"])).status_code == 200

    rotated = client.post(
        f"/api/v1/tokens/{mine[0]['id']}/rotate", json={"expires_in": "7d"}, headers=auth(tokens["alice"])
    )
    assert rotated.status_code == 201
    new = rotated.json()
    assert new["replaces"] == mine[0]["id"]
    assert new["expires_at"] == (clock.now() + timedelta(days=7)).isoformat().replace("+00:00", "Z")
    old = client.get("/api/v1/whoami", headers=auth(tokens["alice"]))  # was in the cache: refused at once
    assert (old.status_code, old.json()["detail"]) == (401, "API token revoked")
    assert client.get("/api/v1/whoami", headers=auth(new["token"])).json()["name"] == "alice"

    revoked = client.post(f"/api/v1/tokens/{new['id']}/revoke", headers=auth(new["token"]))
    assert revoked.json()["state"] == "revoked"
    assert client.get("/api/v1/whoami", headers=auth(new["token"])).status_code == 401
    listed = client.get("/api/v1/tokens?user=alice", headers=auth(tokens["admin"])).json()
    assert [t["state"] for t in listed] == ["revoked", "revoked"]
    assert {"token.rotated", "token.revoked"} <= set(actions(runtime))
    with runtime.ctx.db.read() as conn:
        text = "\n".join(str(e.to_json()) for e in query(conn, limit=1000))
    assert new["token"] not in text


def test_last_use_is_recorded_coarsely(
    runtime: Runtime, client: TestClient, tokens: dict[str, str], clock: FrozenClock
) -> None:
    def last_used() -> str | None:
        found = client.get("/api/v1/tokens", headers=auth(tokens["bob"])).json()
        return found[0]["last_used_at"]  # type: ignore[no-any-return]

    first = last_used()
    assert first is not None
    clock.advance(timedelta(minutes=1))
    runtime.tokens.forget(user="bob")  # a cache miss: the database is asked, but it is too soon to write
    assert last_used() == first
    clock.advance(timedelta(minutes=10))
    runtime.tokens.forget(user="bob")
    assert last_used() != first


def test_disabling_a_user_ends_their_access_and_enabling_gives_the_tokens_back(
    runtime: Runtime, client: TestClient, tokens: dict[str, str]
) -> None:
    alice, bob, admin = (auth(tokens[n]) for n in ("alice", "bob", "admin"))
    grant = client.post("/api/v1/requests", json={"role": "stage-shell"}, headers=alice).json()["grant"]
    pending = client.post(
        "/api/v1/requests", json={"role": "prod-shell", "reason": "INC-1"}, headers=alice
    ).json()
    assert client.get("/api/v1/whoami", headers=alice).status_code == 200  # cached in this process

    assert client.post("/api/v1/users/alice/disable", headers=bob).status_code == 403
    done = client.post("/api/v1/users/alice/disable", headers=admin)
    assert done.status_code == 200
    assert done.json()["disabled"] is True
    refused = client.get("/api/v1/whoami", headers=alice)
    assert (refused.status_code, refused.json()["detail"]) == (401, "user disabled")
    assert client.get(f"/api/v1/grants/{grant['id']}", headers=admin).json()["state"] == "REVOKED"
    assert client.get(f"/api/v1/requests/{pending['id']}", headers=admin).json()["state"] == "CANCELLED"
    assert client.post("/api/v1/users/alice/disable", headers=admin).status_code == 409

    assert client.post("/api/v1/users/alice/enable", headers=admin).json()["disabled"] is False
    assert client.get("/api/v1/whoami", headers=alice).status_code == 200
    assert client.get(f"/api/v1/grants/{grant['id']}", headers=admin).json()["state"] == "REVOKED"
    trail = actions(runtime)
    assert trail.index("user.disabled") < trail.index("user.enabled")
    assert "grant.revoked" in trail


def test_a_request_of_a_user_disabled_meanwhile_is_never_granted(
    runtime: Runtime, client: TestClient, tokens: dict[str, str]
) -> None:
    pending = client.post(
        "/api/v1/requests", json={"role": "prod-shell", "reason": "INC-2"}, headers=auth(tokens["alice"])
    ).json()
    # As if another process, still trusting alice's token for a few seconds, took the request after
    # the disable had cancelled her open ones.
    with runtime.ctx.db.write() as conn:
        accounts.set_user_disabled(conn, "alice", True)
    vote = client.post(
        f"/api/v1/requests/{pending['id']}/reviews", json={"verdict": "approve"}, headers=auth(tokens["bob"])
    )
    assert (vote.status_code, vote.json()["detail"]) == (403, "user alice is disabled")
    assert (
        client.get(f"/api/v1/requests/{pending['id']}", headers=auth(tokens["admin"])).json()["state"]
        == "PENDING"
    )
    assert client.get("/api/v1/grants?all=true", headers=auth(tokens["admin"])).json() == []


def test_admins_change_groups_and_what_they_allow_follows_at_once(
    runtime: Runtime, client: TestClient, tokens: dict[str, str]
) -> None:
    alice, admin = auth(tokens["alice"]), auth(tokens["admin"])
    assert client.post("/api/v1/requests", json={"role": "stage-shell"}, headers=alice).status_code == 201
    changed = client.post(
        "/api/v1/users/alice/groups", json={"add": ["oncall"], "remove": ["engineers"]}, headers=admin
    )
    assert changed.json()["groups"] == ["oncall"]
    assert client.get("/api/v1/whoami", headers=alice).json()["groups"] == ["oncall"]
    assert client.post("/api/v1/requests", json={"role": "stage-shell"}, headers=alice).status_code == 403
    bad = client.post("/api/v1/users/alice/groups", json={"add": ["a b"]}, headers=admin)
    assert bad.status_code == 400
    assert client.post("/api/v1/users/alice/groups", json={"add": ["x"]}, headers=alice).status_code == 403
    assert client.post("/api/v1/users/nobody/groups", json={"add": ["x"]}, headers=admin).status_code == 404
    assert [u["name"] for u in client.get("/api/v1/users", headers=admin).json()] == ["admin", "alice", "bob"]
    assert actions(runtime).count("user.groups_changed") == 1


@pytest.mark.parametrize("name", ["jitgate", "system", "oidc:bob"])
def test_the_brokers_names_and_namespaced_names_cannot_be_taken(runtime: Runtime, name: str) -> None:
    from jitgate.errors import InvalidInput

    with pytest.raises(InvalidInput):
        add(runtime, name, [])


@pytest.mark.parametrize("change", ["revoke the token", "disable the user"])
def test_other_processes_stop_believing_a_token_within_the_cache_bound(
    runtime: Runtime, tokens: dict[str, str], change: str
) -> None:
    from jitgate.auth.tokens import CACHE_SECONDS, TokenAuthenticator
    from jitgate.errors import Unauthenticated
    from jitgate.workflow import tokens as token_flow
    from jitgate.workflow import users

    now = [1000.0]
    elsewhere = TokenAuthenticator(runtime.ctx.db, clock=runtime.ctx.clock, monotonic=lambda: now[0])
    assert elsewhere.authenticate(tokens["alice"]).name == "alice"
    admin = runtime.tokens.authenticate(tokens["admin"])
    if change == "revoke the token":
        (mine,) = token_flow.list_tokens(runtime.ctx, admin, user="alice")
        token_flow.revoke(runtime.ctx, admin, mine.id)
    else:
        users.set_disabled(runtime.ctx, admin, "alice", disabled=True)
    now[0] += CACHE_SECONDS - 0.01
    assert elsewhere.cached(tokens["alice"]) is not None  # the documented window
    now[0] += 0.01
    assert elsewhere.cached(tokens["alice"]) is None
    with pytest.raises(Unauthenticated):
        elsewhere.authenticate(tokens["alice"])
