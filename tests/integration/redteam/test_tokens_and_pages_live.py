"""Attacks on a real broker process through its token endpoints and its web pages.

A token's end is the bound an admin chose when issuing it: the holder (or whoever stole it) must
not renew it past that end by rotating it. And what a browser puts in a page's query string is bad
input at worst, never an internal error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import httpx
import pytest

from support.broker_process import Process, broker


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    with broker(tmp_path_factory.mktemp("redteam-accounts"), {}) as process:
        yield process


def api(process: Process, token: str) -> httpx.Client:
    return httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def ends(answer: dict[str, str]) -> datetime:
    return datetime.fromisoformat(answer["expires_at"].replace("Z", "+00:00"))


def test_rotating_a_token_never_gives_it_a_later_end_than_the_one_it_replaces(live: Process) -> None:
    with api(live, live.admin_token) as admin:
        # The admin gives alice a token that ends in a day (through a rotation of their own).
        listed = admin.get("/api/v1/tokens", params={"user": "alice"}).json()
        (alice_token,) = [t for t in listed if t["state"] == "active"]
        issued = admin.post(f"/api/v1/tokens/{alice_token['id']}/rotate", json={"expires_in": "1d"})
        assert issued.status_code == 201
        short = issued.json()
    limit = ends(short)

    with api(live, short["token"]) as holder:
        renewed = holder.post(f"/api/v1/tokens/{short['id']}/rotate", json={"expires_in": "365d"})
        assert renewed.status_code == 201, renewed.text
        assert ends(renewed.json()) <= limit
        again = renewed.json()
    with api(live, again["token"]) as holder:
        defaulted = holder.post(f"/api/v1/tokens/{again['id']}/rotate", json={})
        assert defaulted.status_code == 201, defaulted.text
        assert ends(defaulted.json()) <= limit
    with api(live, defaulted.json()["token"]) as holder:
        listed = holder.get("/api/v1/tokens").json()
    assert [t["id"] for t in listed if t["state"] == "active"] == [defaulted.json()["id"]]


@contextmanager
def signed_in(process: Process, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=process.url, timeout=10, headers={"Origin": process.url}) as client:
        page = client.get("/ui/login")
        match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert match, page.text
        answer = client.post("/ui/login", data={"token": token, "csrf": match[1]}, follow_redirects=False)
        assert answer.status_code == 303, answer.text
        yield client


@pytest.mark.parametrize("before", ["\u00b2", "9" * 30, "9" * 5000, "٣"])
def test_an_audit_page_cursor_that_is_no_record_number_is_bad_input_not_a_crash(
    live: Process, before: str
) -> None:
    with signed_in(live, live.admin_token) as browser:
        page = browser.get("/ui/audit", params={"before": before})
    assert page.status_code in {200, 400}, page.status_code
    assert "Internal Server Error" not in page.text


def alice_token(live: Process) -> str:
    """A working token of alice's (the tests here rotate hers), made by the admin."""
    with api(live, live.admin_token) as admin:
        mine = admin.get("/api/v1/tokens", params={"user": "alice"}).json()
        (active,) = [t for t in mine if t["state"] == "active"]
        made = admin.post(f"/api/v1/tokens/{active['id']}/rotate", json={"expires_in": "1d"})
        assert made.status_code == 201, made.text
        return str(made.json()["token"])


def test_a_web_session_id_pasted_into_a_reason_never_reaches_the_audit_log(live: Process) -> None:
    token = alice_token(live)
    with signed_in(live, token) as browser:
        session_id = browser.cookies.get("jitgate_session")
        assert session_id is not None
        assert session_id.startswith("jgs_")
    with api(live, token) as alice:
        made = alice.post(
            "/api/v1/requests", json={"role": "stage-shell", "reason": f"see {session_id}", "duration": "1m"}
        )
        assert made.status_code == 400, made.text
        assert made.json()["code"] == "invalid_input"
    with api(live, live.admin_token) as admin:
        trail = admin.get("/api/v1/audit", params={"limit": 1000}).text
    assert session_id not in trail
