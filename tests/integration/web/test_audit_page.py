"""The audit page: each filter narrows the records to those matching it, pages keep the filters,
a bad filter is a 400 that keeps what was typed, people who read only their own records cannot
read anyone else's through the URL, details are readable text, and the chain's verdict is that of
``GET /api/v1/audit/verify``, intact or not."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from integration.web.test_pages import browser, sign_in
from jitgate.audit.query import AuditEvent, query
from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM
from jitgate.domain.model import Verdict
from jitgate.runtime import Runtime
from jitgate.store.tables import audit_events
from jitgate.workflow import grants, requests
from jitgate.workflow.users import add_user

ROW = re.compile(r'<tr>\s*<td>(\d+)</td><td class="when">')
PEOPLE = {"alice": (["engineers"], False), "bob": (["sre-leads"], False), "audra": (["auditors"], False)}


@pytest.fixture
def people(runtime: Runtime, clock: FrozenClock) -> dict[str, str]:
    """API tokens of alice (engineers), bob (sre-leads), audra (auditors) and root (admin)."""
    out = {}
    for name, (groups, admin) in {**PEOPLE, "root": ([], True)}.items():
        _, out[name] = add_user(
            runtime.ctx.db, runtime.ctx.audit, clock, actor=SYSTEM.name, name=name, groups=groups, admin=admin
        )
    return out


@pytest.fixture
def history(runtime: Runtime, people: dict[str, str], clock: FrozenClock) -> dict[str, str]:
    """Requests, reviews, grants and a revocation by alice and bob, a minute apart."""
    alice = runtime.tokens.authenticate(people["alice"])
    bob = runtime.tokens.authenticate(people["bob"])
    clock.advance(timedelta(minutes=1))
    pending = requests.submit(runtime.ctx, alice, role="prod-shell", reason="INC-1", duration="30m")
    clock.advance(timedelta(minutes=1))
    requests.review(runtime.ctx, bob, pending["id"], verdict=Verdict.APPROVE, comment="ok")
    clock.advance(timedelta(minutes=1))
    staged = requests.submit(runtime.ctx, alice, role="stage-shell", reason="", duration="10m")
    clock.advance(timedelta(minutes=1))
    grants.revoke(runtime.ctx, alice, staged["grant"]["id"], comment="done")
    return {"request": pending["id"], "grant": staged["grant"]["id"]}


def everything(runtime: Runtime) -> list[AuditEvent]:
    with runtime.ctx.db.read() as conn:
        return query(conn, limit=10_000, newest_first=True)


def shown(page: str) -> list[int]:
    return [int(n) for n in ROW.findall(page)]


def form_token(client: TestClient) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/ui/audit").text)
    assert match is not None
    return match.group(1)


def signed_in(runtime: Runtime, token: str) -> TestClient:
    client = browser(runtime).__enter__()
    sign_in(client, token)
    return client


def test_each_filter_shows_exactly_the_records_that_match_it(
    runtime: Runtime, people: dict[str, str], history: dict[str, str]
) -> None:
    records = everything(runtime)
    middle = records[len(records) // 2].at
    cases: dict[str, Any] = {
        "actor=bob": lambda e: e.actor == "bob",
        "role=stage-shell": lambda e: e.role == "stage-shell",
        "action=request.created": lambda e: e.action == "request.created",
        "action=grant.": lambda e: e.action.startswith("grant."),
        f"request={history['request']}": lambda e: e.request_id == history["request"],
        f"grant={history['grant']}": lambda e: e.grant_id == history["grant"],
        f"since={middle.isoformat().replace('+00:00', 'Z')}": lambda e: e.at >= middle,
        f"until={middle.isoformat().replace('+00:00', 'Z')}": lambda e: e.at < middle,
        "actor=alice&action=grant.": lambda e: e.actor == "alice" and e.action.startswith("grant."),
    }
    client = signed_in(runtime, people["audra"])
    for filters, matches in cases.items():
        page = client.get(f"/ui/audit?{filters}")
        assert page.status_code == 200
        expected = [e.seq for e in records if matches(e)]
        assert expected, filters
        assert len(expected) < len(records), filters
        assert shown(page.text) == expected, filters
    assert shown(client.get("/ui/audit?action=grant").text) == []  # no such action: nothing
    client.__exit__(None, None, None)


def test_an_action_prefix_is_read_in_order_from_the_action_index_without_sorting(
    runtime: Runtime, history: dict[str, str]
) -> None:
    statements: list[tuple[str, Any]] = []

    def seen(*args: Any) -> None:  # conn, cursor, statement, parameters, context, executemany
        if "FROM audit_events" in args[2]:
            statements.append((args[2], args[3]))

    engine = runtime.ctx.db.engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        with runtime.ctx.db.read() as conn:
            found = query(conn, action="grant.", limit=50, newest_first=True)
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert {e.action for e in found} == {"grant.activated", "grant.revoked"}
    with runtime.ctx.db.read() as conn:
        plans = [
            " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {text}", params))
            for text, params in statements
        ]
    assert len(plans) == 5  # three seeks for the names (the last finds none), a page for each
    for plan in plans:
        assert (
            "USING COVERING INDEX ix_audit_events_action_seq" in plan
            or "USING INDEX ix_audit_events_action_seq" in plan
        ), plan
        assert "TEMP B-TREE" not in plan, plan


def test_pages_go_older_and_newer_keeping_the_filters(
    runtime: Runtime, people: dict[str, str], clock: FrozenClock
) -> None:
    with runtime.ctx.db.write() as conn:
        for n in range(470):
            clock.advance(timedelta(seconds=1))
            who = "alice" if n % 3 else "bob"
            runtime.ctx.audit.append(conn, at=clock.now(), actor=who, action="test.paged", details={"n": n})
    wanted = [e.seq for e in everything(runtime) if e.actor == "alice" and e.action == "test.paged"]
    client = signed_in(runtime, people["root"])
    page = client.get("/ui/audit?actor=alice&action=test.paged")
    pages = [shown(page.text)]
    while (older := re.search(r'<a href="([^"]+)">older', page.text)) is not None:
        link = older.group(1).replace("&amp;", "&")
        assert "actor=alice" in link
        assert "action=test.paged" in link
        page = client.get(link)
        pages.append(shown(page.text))
    assert [len(p) for p in pages] == [200, 113]
    assert [seq for p in pages for seq in p] == wanted
    newer = re.search(r'<a href="([^"]+)">&larr; newer', page.text)
    assert newer is not None
    assert shown(client.get(newer.group(1).replace("&amp;", "&")).text) == pages[0]
    client.__exit__(None, None, None)


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ("since=yesterday", "since is not a date or time like 2026-12-01"),
        ("until=2026-13-01", "until is not a date or time"),
        ("since=2026-12-02&until=2026-12-01", "since must be before until"),
        ("actor=" + "x" * 129, "actor is at most 128 characters"),
    ],
)
def test_a_filter_that_cannot_be_used_is_a_400_keeping_what_was_typed(
    runtime: Runtime, people: dict[str, str], history: dict[str, str], filters: str, message: str
) -> None:
    client = signed_in(runtime, people["root"])
    page = client.get(f"/ui/audit?role=prod-shell&{filters}")
    assert page.status_code == 400
    assert re.search(r'role="alert">[^<\n]*' + re.escape(message), page.text)
    assert 'name="role" value="prod-shell"' in page.text
    for typed in filters.split("&"):
        name, value = typed.split("=")
        assert f'name="{name}" value="{value}"' in page.text
    assert shown(page.text) == []
    client.__exit__(None, None, None)


def test_someone_who_reads_only_their_own_records_cannot_ask_for_another_actors(
    runtime: Runtime, people: dict[str, str], history: dict[str, str]
) -> None:
    assert any(e.actor == "bob" for e in everything(runtime))
    own = [e.seq for e in everything(runtime) if e.actor == "alice"]
    client = signed_in(runtime, people["alice"])
    for filters in ("", "actor=bob", "actor=", f"request={history['request']}&actor=bob"):
        page = client.get(f"/ui/audit?{filters}")
        assert page.status_code == 200
        assert set(shown(page.text)) <= set(own), filters
        assert "your own actions" in page.text
        assert "Verify now" not in page.text
    assert shown(client.get("/ui/audit?actor=bob").text) == own
    refused = client.post("/ui/audit/verify", data={"csrf": form_token(client)})
    assert refused.status_code == 403
    client.__exit__(None, None, None)


def test_details_are_a_readable_list_and_hostile_text_in_them_stays_text(
    runtime: Runtime, people: dict[str, str], clock: FrozenClock
) -> None:
    with runtime.ctx.db.write() as conn:
        runtime.ctx.audit.append(
            conn,
            at=clock.now(),
            actor="alice",
            action="test.hostile",
            details={
                "reason": '<script>alert(1)</script>"><img src=x>',
                "nested": {"why": "<b>bold</b>"},
                "targets": ["web-1", "web-2"],
                "long": "x" * 2000,
            },
        )
    client = signed_in(runtime, people["root"])
    page = client.get("/ui/audit?action=test.hostile").text
    assert "<script>alert" not in page
    assert "<img src=x>" not in page
    assert "<b>bold" not in page
    assert "<dt>reason</dt><dd>&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x&gt;</dd>" in page
    assert "<dt>nested.why</dt><dd>&lt;b&gt;bold&lt;/b&gt;</dd>" in page
    assert "<dt>targets</dt><dd>web-1, web-2</dd>" in page
    assert "x" * 2000 in page  # whole, wrapped by the style sheet rather than cut
    assert '<div class="scroll">' in page
    client.__exit__(None, None, None)


def verified(client: TestClient, csrf: str) -> str:
    """The audit page once the verification started by its "Verify now" form has finished."""
    started = client.post("/ui/audit/verify", data={"csrf": csrf})
    assert "verification started; reload for its verdict" in started.text
    client.app.state.audit_verdicts.wait(60)  # type: ignore[attr-defined]
    page = client.get("/ui/audit").text
    assert "Verifying since" not in page
    return page


def test_the_chain_verdict_is_intact_on_a_good_chain_and_names_the_damage_on_a_tampered_one(
    runtime: Runtime, people: dict[str, str], history: dict[str, str]
) -> None:
    client = signed_in(runtime, people["audra"])
    assert "Not verified since this broker started." in client.get("/ui/audit").text
    csrf = form_token(client)
    good = verified(client, csrf)
    api = client.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {people['audra']}"}).json()
    assert api["verdict"] == "intact"
    assert f"<strong>intact</strong>: {api['count']} records checked" in good
    assert "by audra" in good

    with runtime.ctx.db.engine.begin() as conn:
        body = conn.execute(sa.select(audit_events.c.body).where(audit_events.c.seq == 3)).scalar_one()
        conn.execute(
            audit_events.update()
            .where(audit_events.c.seq == 3)
            .values(body=body.replace('"admin":false', '"admin":true'))
        )
    bad = verified(client, csrf)
    api = client.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {people['audra']}"}).json()
    assert api["verdict"] == "broken"
    assert f"<strong>broken</strong>: {api['count']} records checked" in bad
    assert "record 3: hash does not match its contents (edited?)" in bad
    assert "intact" not in bad
    client.__exit__(None, None, None)


def test_a_record_whose_body_was_mangled_is_shown_as_damaged_and_the_page_stays_readable(
    runtime: Runtime, people: dict[str, str], history: dict[str, str]
) -> None:
    with runtime.ctx.db.engine.begin() as conn:
        conn.execute(audit_events.update().where(audit_events.c.seq == 3).values(body="{not json"))
    client = signed_in(runtime, people["root"])
    page = client.get("/ui/audit")
    assert page.status_code == 200
    assert shown(page.text) == [e.seq for e in everything(runtime)]
    assert "<dt>damaged</dt><dd>the body of record 3 is not an audit record" in page.text
    api = client.get("/api/v1/audit?limit=1000", headers={"Authorization": f"Bearer {people['root']}"})
    assert api.status_code == 200
    (damaged,) = [e for e in api.json() if e["seq"] == 3]
    assert damaged["action"] == "user.added"  # from the record's filter column
    client.__exit__(None, None, None)
