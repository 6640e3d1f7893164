"""Over HTTP: an id the caller may not see is answered exactly like an id that does not exist;
hostile text is a one-line 422; the pending cap is a one-line 409; every list pages by cursor so
that nothing is out of reach, the oldest entry included."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from integration.api.test_api import auth, tokens
from jitgate.clock import FrozenClock
from jitgate.runtime import Runtime

__all__ = ["tokens"]  # fixture shared with test_api

MISSING_REQUEST = "r-000000000000"
MISSING_GRANT = "g-000000000000"

ENDPOINTS = [
    ("GET", "/api/v1/requests/{request}", None),
    ("POST", "/api/v1/requests/{request}/reviews", {"verdict": "approve"}),
    ("POST", "/api/v1/requests/{request}/reviews", {"verdict": "deny", "comment": "no"}),
    ("POST", "/api/v1/requests/{request}/cancel", None),
    ("GET", "/api/v1/grants/{grant}", None),
    ("POST", "/api/v1/grants/{grant}/revoke", {"comment": "bye"}),
    ("POST", "/api/v1/grants/{grant}/extend", {"duration": "10m"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=[f"{m} {p} {b}" for m, p, b in ENDPOINTS])
def test_an_outsider_gets_the_same_404_for_an_existing_id_as_for_a_missing_one(
    client: TestClient, tokens: dict[str, str], method: str, path: str, body: dict[str, str] | None
) -> None:
    alice = auth(tokens["alice"])
    request = client.post("/api/v1/requests", json={"role": "prod-shell", "reason": "INC-1"}, headers=alice)
    grant = client.post("/api/v1/requests", json={"role": "stage-shell", "duration": "20m"}, headers=alice)
    real = {"request": request.json()["id"], "grant": grant.json()["grant"]["id"]}
    missing = {"request": MISSING_REQUEST, "grant": MISSING_GRANT}
    kind = "request" if "{request}" in path else "grant"

    def call(ids: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        kwargs = {"json": body} if body is not None else {}
        answer = client.request(method, path.format(**ids), headers=auth(tokens["carol"]), **kwargs)
        headers = {k: v for k, v in answer.headers.items() if k != "date"}
        return answer.status_code, headers, answer.content

    seen = call(real)
    unknown = call(missing)
    assert seen[0] == unknown[0] == 404
    # Byte for byte, once the id the caller sent is put in the same place.
    assert seen[2].replace(real[kind].encode(), missing[kind].encode()) == unknown[2]
    assert seen[1] == unknown[1]
    # ...and nothing changed for the owner.
    after = client.get(f"/api/v1/requests/{real['request']}", headers=alice).json()
    assert after["state"] == "PENDING"
    assert after["reviews"] == []
    assert client.get(f"/api/v1/grants/{real['grant']}", headers=alice).json()["state"] == "ACTIVE"


def test_approvers_still_see_what_they_review(client: TestClient, tokens: dict[str, str]) -> None:
    made = client.post(
        "/api/v1/requests", json={"role": "prod-shell", "reason": "INC-1"}, headers=auth(tokens["alice"])
    ).json()
    assert client.get(f"/api/v1/requests/{made['id']}", headers=auth(tokens["bob"])).status_code == 200
    cancel = client.post(f"/api/v1/requests/{made['id']}/cancel", headers=auth(tokens["bob"]))
    assert cancel.status_code == 403  # bob may know of it, but only alice withdraws it


@pytest.mark.parametrize(
    "reason", ["INC-1 \x1b[2Japproved", "INC-1 \u202eevil", "INC-1\nINC-2 approved by bob"]
)
def test_hostile_text_is_a_one_line_422_and_nothing_is_written(
    client: TestClient, tokens: dict[str, str], reason: str
) -> None:
    answer = client.post(
        "/api/v1/requests", json={"role": "prod-shell", "reason": reason}, headers=auth(tokens["alice"])
    )
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_text"
    assert "\n" not in answer.json()["detail"]
    assert "\x1b" not in answer.text
    assert client.get("/api/v1/requests?mine=true", headers=auth(tokens["alice"])).json() == []


def test_past_the_pending_cap_is_a_one_line_409(
    client: TestClient, tokens: dict[str, str], runtime: Runtime
) -> None:
    runtime.ctx.max_pending_per_requester = 2
    alice = auth(tokens["alice"])
    for n in range(2):
        body = {"role": "prod-shell", "reason": f"INC-{n}"}
        assert client.post("/api/v1/requests", json=body, headers=alice).status_code == 201
    refused = client.post("/api/v1/requests", json={"role": "prod-shell", "reason": "INC-3"}, headers=alice)
    assert refused.status_code == 409
    assert refused.json()["code"] == "too_many_pending"
    assert len(client.get("/api/v1/requests?mine=true", headers=alice).json()) == 2


def follow(client: TestClient, url: str, token: str) -> tuple[list[str], list[str]]:
    """Every id over every page from ``url`` on, and the ``Link`` headers seen."""
    ids: list[str] = []
    links: list[str] = []
    next_url: str | None = url
    while next_url:
        answer = client.get(next_url, headers=auth(token))
        assert answer.status_code == 200, answer.text
        ids.extend(item["id"] for item in answer.json())
        links.append(answer.headers.get("link", ""))
        next_url = answer.links.get("next", {}).get("url")
    return ids, links


def test_the_review_queue_pages_until_the_oldest_request(
    client: TestClient, tokens: dict[str, str], runtime: Runtime, clock: FrozenClock
) -> None:
    runtime.ctx.max_pending_per_requester = 1000
    made = []
    for n in range(130):
        if n % 2 == 0:
            clock.advance(timedelta(seconds=1))  # pairs share a creation time: the id breaks the tie
        body = {"role": "prod-shell", "reason": f"INC-{n}"}
        made.append(client.post("/api/v1/requests", json=body, headers=auth(tokens["alice"])).json()["id"])
    ids, links = follow(
        client, "/api/v1/requests?reviewable=true&limit=49", tokens["bob"]
    )  # odd: a tie on the edge
    assert len(links) == 3
    assert sorted(ids) == sorted(made)
    assert len(set(ids)) == len(ids)
    assert ids[-1] == min(made[:2])  # newest first, and the oldest is reached
    # From the last page, "prev" leads back to the page before it.
    first_page = client.get("/api/v1/requests?reviewable=true&limit=50", headers=auth(tokens["bob"]))
    second = client.get(first_page.links["next"]["url"], headers=auth(tokens["bob"]))
    back = client.get(second.links["prev"]["url"], headers=auth(tokens["bob"]))
    assert [r["id"] for r in back.json()] == [r["id"] for r in first_page.json()]
    assert "prev" not in back.links
    # The requester's own list pages the same way.
    own, _ = follow(client, "/api/v1/requests?mine=true&limit=7", tokens["alice"])
    assert own == ids


def test_grants_page_too(client: TestClient, tokens: dict[str, str]) -> None:
    made = []
    for _ in range(12):
        body = {"role": "stage-shell", "duration": "20m"}
        made.append(client.post("/api/v1/requests", json=body, headers=auth(tokens["alice"])).json())
    ids, links = follow(client, "/api/v1/grants?limit=5", tokens["alice"])
    assert len(links) == 3
    assert sorted(ids) == sorted(m["grant"]["id"] for m in made)


@pytest.mark.parametrize(
    "query", ["cursor=bm9wZQ", "cursor=%%%", "before=x&cursor=y", "limit=0", "limit=501"]
)
def test_bad_page_parameters_are_one_line_errors(
    client: TestClient, tokens: dict[str, str], query: str
) -> None:
    answer = client.get(f"/api/v1/requests?{query}", headers=auth(tokens["alice"]))
    assert answer.status_code in {400, 422}
    assert "\n" not in answer.json()["detail"]


def test_the_audit_trail_pages_back_to_its_first_record(client: TestClient, tokens: dict[str, str]) -> None:
    for _ in range(6):
        client.post("/api/v1/requests", json={"role": "stage-shell"}, headers=auth(tokens["alice"]))
    seqs: list[int] = []
    next_url: str | None = "/api/v1/audit?limit=4"
    while next_url:
        answer = client.get(next_url, headers=auth(tokens["admin"]))
        seqs += [e["seq"] for e in answer.json()]
        next_url = answer.links.get("next", {}).get("url")
    assert seqs == list(range(seqs[0], 0, -1))
    assert len(seqs) > 12
