"""Failed authentications are throttled per source address on a real broker process: 429 with
``Retry-After`` before any token is looked at, other addresses unaffected, a forwarded-for header
not believed, one audit record per throttled source, and a counter in ``/metrics``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from support.broker_process import Process, broker

LIMIT = 3
WRONG = "jg_" + "A" * 43


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    env = {"JITGATE_AUTH_FAILURES_PER_SOURCE": str(LIMIT), "JITGATE_AUTH_FAILURE_WINDOW_SECONDS": "600"}
    with broker(tmp_path_factory.mktemp("throttle"), env) as process:
        yield process


def client(process: Process, source: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=process.url, headers=headers, transport=transport, timeout=10)


def throttled_events(process: Process) -> list[dict]:  # type: ignore[type-arg]
    with client(process, "127.0.0.10", process.admin_token) as admin:
        answer = admin.get("/api/v1/audit", params={"action": "auth.throttled"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body if isinstance(body, list) else body["events"]  # type: ignore[no-any-return]


def test_a_source_that_keeps_failing_is_answered_429_even_with_a_valid_token(throttled: Process) -> None:
    with client(throttled, "127.0.0.2", WRONG) as guesser:
        assert [guesser.get("/api/v1/whoami").status_code for _ in range(LIMIT)] == [401] * LIMIT
        refused = guesser.get("/api/v1/whoami")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "too_many_failures"
    assert 1 <= int(refused.headers["Retry-After"]) <= 600 / LIMIT
    with client(throttled, "127.0.0.2", throttled.token) as same_address:
        assert same_address.get("/api/v1/whoami").status_code == 429
    with client(throttled, "127.0.0.11", throttled.token) as someone_else:
        assert someone_else.get("/api/v1/whoami").json()["name"] == "alice"


def test_a_throttled_source_is_audited_once_with_its_count_and_every_failure_is_counted(
    throttled: Process,
) -> None:
    with client(throttled, "127.0.0.3", WRONG) as guesser:
        answers = [guesser.get("/api/v1/grants").status_code for _ in range(LIMIT + 20)]
    assert answers == [401] * LIMIT + [429] * 20
    events = [e for e in throttled_events(throttled) if e["details"]["source"] == "127.0.0.3"]
    assert len(events) == 1
    assert events[0]["details"]["failures"] == LIMIT
    assert events[0]["details"]["via"] == "api"
    metrics = httpx.get(f"{throttled.url}/metrics").text
    failures = next(line for line in metrics.splitlines() if line.startswith("jitgate_auth_failures_total"))
    assert float(failures.split()[1]) >= LIMIT
    refusals = next(line for line in metrics.splitlines() if line.startswith("jitgate_auth_throttled_total"))
    assert float(refusals.split()[1]) >= 20


def test_a_request_without_a_token_is_not_counted_as_a_failed_attempt(throttled: Process) -> None:
    with client(throttled, "127.0.0.4") as anonymous:
        assert [anonymous.get("/api/v1/whoami").status_code for _ in range(LIMIT + 2)] == [401] * (LIMIT + 2)


def sign_in_form(browser: httpx.Client) -> str:
    """The sign-in page's CSRF token (its pre-session cookie stays in ``browser``)."""
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', browser.get("/ui/login").text)
    assert match is not None
    return match.group(1)


def test_the_web_sign_in_form_is_throttled_the_same_way(throttled: Process) -> None:
    with client(throttled, "127.0.0.5") as browser:
        csrf = sign_in_form(browser)
        tries = [browser.post("/ui/login", data={"token": WRONG, "csrf": csrf}) for _ in range(LIMIT + 1)]
        assert [t.status_code for t in tries] == [401] * LIMIT + [429]
        assert "too many failed authentications" in tries[-1].text
        assert int(tries[-1].headers["Retry-After"]) >= 1
        valid = browser.post("/ui/login", data={"token": throttled.token, "csrf": csrf})
        assert valid.status_code == 429
    with client(throttled, "127.0.0.12") as other:
        answer = other.post("/ui/login", data={"token": throttled.token, "csrf": sign_in_form(other)})
        assert answer.status_code == 303
    events = [e for e in throttled_events(throttled) if e["details"]["source"] == "127.0.0.5"]
    assert [e["details"]["via"] for e in events] == ["web"]


def test_a_forwarded_for_header_does_not_make_a_new_source_even_from_loopback(throttled: Process) -> None:
    """uvicorn would believe ``X-Forwarded-For`` from 127.0.0.1 by default; the broker never does."""
    with client(throttled, "127.0.0.1", WRONG) as guesser:
        answers = [
            guesser.get("/api/v1/whoami", headers={"X-Forwarded-For": f"10.9.9.{i}"}).status_code
            for i in range(LIMIT + 1)
        ]
    assert answers == [401] * LIMIT + [429]
