"""SSH keys and the gateway's whereabouts over HTTP: registered, listed, removed; an ephemeral key
for one connection; ``/api/v1/gateway`` tells a client where to connect and what to trust."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from jitgate.clock import FrozenClock
from jitgate.providers.ssh.ca import CaKind
from jitgate.runtime import Runtime, build_runtime
from jitgate.settings import Settings
from jitgate.workflow import keys
from jitgate.workflow.users import add_user
from support import TEST_POLICY
from support.sshkeys import public_line

GATEWAY = {
    "gateway_listen": "0.0.0.0:2222",
    "gateway_public_address": "gw.example.org:2222",
    "gateway_names": ["gw.example.org", "gw"],
}


@pytest.fixture
def gateway() -> dict[str, Any]:
    """Gateway settings of the broker under test: none (off) unless a test parametrizes them."""
    return {}


@pytest.fixture
def runtime(tmp_path: Path, clock: FrozenClock, gateway: dict[str, Any]) -> Iterator[Runtime]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY)
    rt = build_runtime(Settings(data_dir=tmp_path / "data", policy_file=policy, **gateway), clock=clock)
    yield rt
    rt.ctx.db.dispose()


@pytest.fixture
def people(runtime: Runtime) -> dict[str, dict[str, str]]:
    ctx = runtime.ctx
    made = {}
    for name, admin in (("alice", False), ("bob", False), ("admin", True)):
        token = add_user(
            ctx.db, ctx.audit, ctx.clock, actor="test", name=name, groups=["engineers"], admin=admin
        )[1]
        made[name] = {"Authorization": f"Bearer {token}"}
    return made


def test_a_user_registers_lists_and_removes_a_key(
    client: TestClient, people: dict[str, dict[str, str]], clock: FrozenClock, tmp_path: Path
) -> None:
    alice = people["alice"]
    line = public_line(tmp_path, "id", "-t", "ed25519", comment="alice@laptop")
    added = client.post("/api/v1/keys", json={"public_key": line, "expires_in": "30d"}, headers=alice)
    assert added.status_code == 201
    key = added.json()
    assert key["id"].startswith("k-")
    assert (key["user"], key["key_type"], key["comment"], key["ephemeral"], key["state"]) == (
        "alice",
        "ssh-ed25519",
        "alice@laptop",
        False,
        "active",
    )
    assert key["expires_at"] == (clock.now() + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    assert key["last_used_at"] is None
    listed = client.get("/api/v1/keys", headers=alice)
    assert (listed.status_code, listed.json()) == (200, [key])
    removed = client.delete(f"/api/v1/keys/{key['id']}", headers=alice)
    assert (removed.status_code, removed.json()["id"]) == (200, key["id"])
    assert client.get("/api/v1/keys", headers=alice).json() == []
    assert client.delete(f"/api/v1/keys/{key['id']}", headers=alice).status_code == 404


def test_without_expires_in_a_key_lives_as_long_as_the_broker_allows(
    client: TestClient,
    runtime: Runtime,
    people: dict[str, dict[str, str]],
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    line = public_line(tmp_path, "id", "-t", "ed25519")
    added = client.post(
        "/api/v1/keys", json={"public_key": line, "comment": "work"}, headers=people["bob"]
    ).json()
    longest = timedelta(seconds=runtime.settings.gateway_key_lifetime_seconds)
    assert added["expires_at"] == (clock.now() + longest).isoformat().replace("+00:00", "Z")
    assert added["comment"] == "work"


def test_refusals_have_fitting_statuses(
    client: TestClient,
    runtime: Runtime,
    people: dict[str, dict[str, str]],
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    alice, bob = people["alice"], people["bob"]
    line = public_line(tmp_path, "id", "-t", "ed25519")
    assert client.post("/api/v1/keys", json={"public_key": line}).status_code == 401
    assert client.get("/api/v1/keys").status_code == 401
    short = public_line(tmp_path, "short", "-t", "rsa", "-b", "1024")
    refused = client.post("/api/v1/keys", json={"public_key": short}, headers=alice)
    assert refused.status_code == 400
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "at least 2048" in refused.json()["detail"]
    ca_line = runtime.ctx.providers["ssh"].ca_store.active(CaKind.USER, clock.now()).public_line  # type: ignore[attr-defined]
    assert client.post("/api/v1/keys", json={"public_key": ca_line}, headers=alice).status_code == 400
    too_long = client.post("/api/v1/keys", json={"public_key": line, "expires_in": "400d"}, headers=alice)
    assert (too_long.status_code, too_long.json()["detail"]) == (
        400,
        "a key may be registered for at most 365 days",
    )
    assert client.post("/api/v1/keys", json={"public_key": ""}, headers=alice).status_code == 422
    assert (
        client.post(
            "/api/v1/keys", json={"public_key": line, "expires_in": "soon"}, headers=alice
        ).status_code
        == 400
    )
    assert (
        client.post("/api/v1/keys", json={"public_key": line, "extra": 1}, headers=alice).status_code == 422
    )
    mine = client.post("/api/v1/keys", json={"public_key": line}, headers=alice).json()
    again = client.post("/api/v1/keys", json={"public_key": line}, headers=bob)
    assert (again.status_code, again.json()["detail"]) == (409, "this key is already registered")
    assert client.delete(f"/api/v1/keys/{mine['id']}", headers=bob).status_code == 404
    assert client.get("/api/v1/keys?user=alice", headers=bob).status_code == 403


def test_admins_list_anyones_keys_and_remove_them(
    client: TestClient, people: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    alice, admin = people["alice"], people["admin"]
    mine = client.post(
        "/api/v1/keys", json={"public_key": public_line(tmp_path, "a", "-t", "ed25519")}, headers=alice
    ).json()
    client.post(
        "/api/v1/keys",
        json={"public_key": public_line(tmp_path, "b", "-t", "ed25519")},
        headers=people["bob"],
    )
    assert [k["user"] for k in client.get("/api/v1/keys?user=*", headers=admin).json()] == ["alice", "bob"]
    assert [k["id"] for k in client.get("/api/v1/keys?user=alice", headers=admin).json()] == [mine["id"]]
    assert client.delete(f"/api/v1/keys/{mine['id']}", headers=admin).json()["user"] == "alice"


def test_the_gateway_is_reported_off_when_it_does_not_listen(
    client: TestClient, people: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    assert client.get("/api/v1/gateway").status_code == 401
    answer = client.get("/api/v1/gateway", headers=people["alice"])
    assert (answer.status_code, answer.json()) == (200, {"enabled": False, "names": [], "known_hosts": []})
    line = public_line(tmp_path, "e", "-t", "ed25519")
    refused = client.post("/api/v1/gateway/keys", json={"public_key": line}, headers=people["alice"])
    assert (refused.status_code, refused.json()["detail"]) == (
        409,
        "the SSH gateway is not enabled on this broker",
    )


@pytest.mark.parametrize("gateway", [GATEWAY])
def test_the_gateway_says_where_to_connect_and_which_host_ca_to_trust(
    client: TestClient, runtime: Runtime, people: dict[str, dict[str, str]], clock: FrozenClock
) -> None:
    answer = client.get("/api/v1/gateway", headers=people["alice"]).json()
    host_ca = runtime.ctx.providers["ssh"].ca_store.public_lines(CaKind.HOST, clock.now())  # type: ignore[attr-defined]
    assert answer == {
        "enabled": True,
        "host": "gw.example.org",
        "port": 2222,
        "names": ["gw.example.org", "gw"],
        "known_hosts": [f"@cert-authority [gw.example.org]:2222,[gw]:2222 {line}" for line in host_ca],
    }


@pytest.mark.parametrize("gateway", [{"gateway_listen": "127.0.0.1:22"}])
def test_without_a_public_address_or_names_the_listen_address_is_used(
    client: TestClient, people: dict[str, dict[str, str]]
) -> None:
    answer = client.get("/api/v1/gateway", headers=people["alice"]).json()
    assert (answer["host"], answer["port"], answer["names"]) == ("127.0.0.1", 22, ["127.0.0.1"])
    assert answer["known_hosts"][0].startswith("@cert-authority 127.0.0.1 ssh-ed25519 ")


@pytest.mark.parametrize("gateway", [GATEWAY])
def test_an_ephemeral_key_is_registered_for_minutes_and_identifies_its_holder(
    client: TestClient,
    runtime: Runtime,
    people: dict[str, dict[str, str]],
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    line = public_line(tmp_path, "e", "-t", "ed25519")
    made = client.post("/api/v1/gateway/keys", json={"public_key": line}, headers=people["alice"])
    assert made.status_code == 201
    key = made.json()
    assert key["ephemeral"] is True
    ttl = timedelta(seconds=runtime.settings.gateway_ephemeral_key_seconds)
    assert key["expires_at"] == (clock.now() + ttl).isoformat().replace("+00:00", "Z")
    found = keys.identity_for_key(runtime.ctx, base64.b64decode(line.split()[1]), clock.now())
    assert found is not None
    assert found[0].name == "alice"
    assert [k["ephemeral"] for k in client.get("/api/v1/keys", headers=people["alice"]).json()] == [True]
    assert client.delete(f"/api/v1/keys/{key['id']}", headers=people["alice"]).status_code == 200
