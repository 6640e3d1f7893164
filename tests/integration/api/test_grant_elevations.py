"""A grant's JSON says what its elevations changed at which target: the account, each group with
its state (held, withdrawn, kept because held before), the work still pending while the target is
down with its attempts and last error, and ``elevations_pending``, the count still to be applied.
A page of grants reads all of that in one statement, however many grants it holds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.clock import FrozenClock
from jitgate.runtime import Runtime
from jitgate.workflow.scheduler import run_revocations
from support.elevated_grants import GROUP, OTHER, PRIOR, ElevatedGrants, elevated_grants

ALICE_DN = "uid=alice"  # the fake directory's canonical name for alice's entry


@pytest.fixture
def world(runtime: Runtime, clock: FrozenClock) -> ElevatedGrants:
    return elevated_grants(runtime, clock)


@pytest.fixture
def api(world: ElevatedGrants) -> Iterator[TestClient]:
    with TestClient(create_app(world.runtime, run_scheduler=False)) as client:
        client.headers["Authorization"] = f"Bearer {world.token}"
        yield client


def listed(api: TestClient) -> dict[str, dict[str, Any]]:
    answer = api.get("/api/v1/grants")
    assert answer.status_code == 200
    return {g["id"]: g for g in answer.json()}


def test_an_ended_grant_shows_the_group_withdrawn_and_the_one_held_before_kept(
    api: TestClient, world: ElevatedGrants
) -> None:
    grant = listed(api)[world.ended]
    (elevation,) = grant["elevations"]
    assert elevation["target"] == "corp-directory"
    assert (elevation["kind"], elevation["account"], elevation["state"]) == ("ldap", ALICE_DN, "revoked")
    assert elevation["pending"] is None
    items = {i["item"]: i for i in elevation["items"]}
    assert items[PRIOR] == {
        "item": PRIOR,
        "state": "released",
        "prior": True,
        "outcome": "kept: held before the grant",
        "released_at": "2026-11-26T09:05:01Z",
    }
    assert (items[GROUP]["prior"], items[GROUP]["outcome"]) == (False, "withdrawn")
    assert grant["elevations_pending"] == 0


def test_an_active_grant_shows_its_group_held(api: TestClient, world: ElevatedGrants) -> None:
    grant = listed(api)[world.held]
    (elevation,) = grant["elevations"]
    assert elevation["state"] == "issued"
    assert elevation["items"] == [
        {"item": GROUP, "state": "held", "prior": False, "outcome": None, "released_at": None}
    ]
    assert grant["elevations_pending"] == 0


def test_an_elevation_the_target_is_down_for_stays_pending_with_its_last_error(
    api: TestClient, world: ElevatedGrants, clock: FrozenClock
) -> None:
    for grant in (listed(api)[world.pending], api.get(f"/api/v1/grants/{world.pending}").json()):
        (elevation,) = grant["elevations"]
        assert elevation["state"] == "elevating"
        assert elevation["account"] == "alice"  # as the policy maps it: the directory was never asked
        assert [i["state"] for i in elevation["items"]] == ["planned"]
        pending = elevation["pending"]
        assert (pending["action"], pending["attempts"]) == ("elevate", 1)
        assert pending["last_error"] == "target corp-directory: cannot connect: connection refused"
        assert grant["elevations_pending"] == 1
    world.target.up = True
    clock.advance(timedelta(minutes=5))
    assert run_revocations(world.runtime.ctx) == (1, 0)
    grant = api.get(f"/api/v1/grants/{world.pending}").json()
    assert grant["elevations_pending"] == 0
    assert grant["elevations"][0]["items"][0]["item"] == OTHER
    assert grant["elevations"][0]["items"][0]["state"] == "held"
    assert grant["elevations"][0]["pending"] is None


def test_a_grant_that_elevates_nothing_has_no_elevations(api: TestClient, world: ElevatedGrants) -> None:
    grant = listed(api)[world.shell]
    assert (grant["elevations"], grant["elevations_pending"]) == ([], 0)


def test_a_request_answered_active_counts_the_elevations_still_to_be_applied(
    api: TestClient, world: ElevatedGrants
) -> None:
    made = api.post("/api/v1/requests", json={"role": "oncall", "reason": "INC-8", "duration": "30m"})
    assert made.status_code == 201
    grant = made.json()["grant"]
    assert grant["elevations_pending"] == 1
    assert [e["items"][0]["state"] for e in grant["elevations"]] == ["planned"]
    assert grant["elevations"][0]["pending"]["action"] == "elevate"
    shown = api.get(f"/api/v1/requests/{made.json()['id']}").json()["grant"]
    assert shown["elevations_pending"] == 1


def test_a_page_of_grants_reads_their_elevations_in_one_statement(
    api: TestClient, world: ElevatedGrants
) -> None:
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = world.runtime.ctx.db.engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        assert len(listed(api)) == 4
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert sum("FROM credentials JOIN elevations" in s for s in statements) == 1
