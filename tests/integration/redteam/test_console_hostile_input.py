"""The console (and the API beside it) under input no page ever links to, on both databases.

A NUL character in an id, a filter or a cursor used to reach PostgreSQL, which fails every
statement that carries one: a 500 for a look-up, and the refusal of a form not audited at all.
A cursor whose time has no UTC form (year 1 at +14:00) crashed on either database. Each is now a
400 with one line, and a refused form is on record whatever its id held.

A display name comes from the identity provider, where people often choose their own: one with a
bidi override or an invisible character could make a reviewer read another name beside the real
one. Such a name is not taken at sign-in, and one stored earlier is shown with visible escapes.

An audit record whose body was edited into JSON of the wrong shape (``"details": null``, a time
without its zone) used to make the audit page a 500: the page auditors open when the log was
tampered with. It is shown as damaged, as a body that is not JSON at all already was; an
extension's page whose audited times were edited shows the request without them.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.audit.query import query
from jitgate.auth.oidc import ClaimMapping
from jitgate.auth.sessions import WebSessions
from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM, Identity
from jitgate.domain.model import Verdict
from jitgate.runtime import Runtime, build_runtime
from jitgate.settings import Settings
from jitgate.store import tables
from jitgate.store.tables import audit_events, metadata
from jitgate.workflow import grants, requests
from jitgate.workflow.users import add_user
from support import TEST_POLICY

ORIGIN = "https://jitgate.test"
NUL_TEXT = "text with a NUL character (U+0000) is never stored, nor looked up"
STALE_CURSOR = "cursor is not one this broker handed out"


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def runtime(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Iterator[Runtime]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY)
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("pg_database")
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"TRUNCATE {', '.join(t.name for t in metadata.sorted_tables)} CASCADE")
        engine.dispose()
    rt = build_runtime(
        Settings(data_dir=tmp_path / "data", policy_file=policy, database_url=url), clock=clock
    )
    yield rt
    rt.ctx.db.dispose()


@pytest.fixture
def tokens(runtime: Runtime, clock: FrozenClock) -> dict[str, str]:
    out = {}
    for name, groups, admin in (("alice", ["engineers"], False), ("root", [], True)):
        _, out[name] = add_user(
            runtime.ctx.db, runtime.ctx.audit, clock, actor=SYSTEM.name, name=name, groups=groups, admin=admin
        )
    return out


def signed_in(runtime: Runtime, token: str) -> tuple[TestClient, str]:
    client = TestClient(
        create_app(runtime, run_scheduler=False), base_url=ORIGIN, raise_server_exceptions=False
    )
    login = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/ui/login").text)
    assert login is not None
    assert client.post("/ui/login", data={"token": token, "csrf": login.group(1)}).status_code == 200
    form = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/ui/").text)
    assert form is not None
    return client, form.group(1)


def alert(html: str) -> str:
    found = re.search(r'role="alert">([^<]*)<', html)
    return found.group(1) if found else html[:200]


@pytest.mark.parametrize(
    "path",
    [
        "/ui/requests/%00",
        "/ui/grants/r%00x",
        "/ui/audit?actor=%00",
        "/ui/audit?request=%00",
        "/ui/audit?grant=%00",
        "/ui/audit?role=%00",
        "/ui/audit?action=grant.%00",
        "/ui/?mine_cursor=" + cursor("2026-12-01T09:00:00+00:00|\x00"),
        "/ui/admin/tokens?user=%00",
        "/ui/admin/keys?user=%00",
        "/ui/admin/sessions?live_cursor=" + cursor("2026-12-01T09:00:00+00:00|s-\x00"),
    ],
)
def test_a_nul_in_an_id_filter_or_cursor_of_a_page_is_a_400(
    runtime: Runtime, tokens: dict[str, str], path: str
) -> None:
    root, _ = signed_in(runtime, tokens["root"])
    with root:
        shown = root.get(path)
    assert shown.status_code == 400, shown.text[:300]
    assert alert(shown.text) in (NUL_TEXT, STALE_CURSOR)
    assert shown.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/ui/requests", {"role": "stage-shell\x00", "duration": "5m"}),
        ("/ui/requests/r-%00/review", {"verdict": "approve"}),
        ("/ui/grants/g-%00/revoke", {}),
        ("/ui/grants/g-%00/extend", {"duration": "5m"}),
    ],
)
def test_a_form_with_a_nul_in_its_id_or_role_is_refused_and_the_refusal_is_on_record(
    runtime: Runtime, tokens: dict[str, str], url: str, data: dict[str, str]
) -> None:
    alice, csrf = signed_in(runtime, tokens["alice"])
    with alice:
        refused = alice.post(url, data={"csrf": csrf, **data}, headers={"Origin": ORIGIN})
    assert refused.status_code in (400, 404, 422), refused.text[:300]
    assert "My requests" in refused.text or "Not shown" in refused.text  # the console's page, not a crash
    with runtime.ctx.db.read() as conn:
        (last,) = query(conn, actor="alice", action="access.refused", limit=1, newest_first=True)
    given = {k: v for k, v in last.details.items() if k.startswith("given_")}
    assert any("\x00" in str(v) for v in given.values()), last.details


def test_the_api_answers_a_nul_in_an_id_or_filter_with_a_400_too(
    runtime: Runtime, tokens: dict[str, str]
) -> None:
    with TestClient(create_app(runtime, run_scheduler=False), raise_server_exceptions=False) as api:
        bearer = {"Authorization": f"Bearer {tokens['root']}"}
        for path in ("/api/v1/grants/%00", "/api/v1/requests/%00", "/api/v1/audit?action=%00"):
            answer = api.get(path, headers=bearer)
            assert answer.status_code == 400, (path, answer.text)
            assert answer.json()["detail"] == NUL_TEXT


@pytest.mark.parametrize(
    "at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-12-01T09:00:00+25:00"]
)
def test_a_cursor_whose_time_has_no_utc_form_is_refused_not_a_crash(
    runtime: Runtime, tokens: dict[str, str], at: str
) -> None:
    root, _ = signed_in(runtime, tokens["root"])
    with root:
        for path in (
            f"/ui/?mine_cursor={cursor(at + '|r-1')}",
            f"/ui/inbox?queue_before={cursor(at + '|r-1')}",
            f"/ui/admin/users?users_cursor={cursor(at + '|x')}",
            f"/ui/admin/grants?grants_before={cursor(at + '|g-1')}",
        ):
            shown = root.get(path)
            assert shown.status_code == 400, (path, shown.text[:300])
            assert alert(shown.text) == STALE_CURSOR


@pytest.mark.parametrize("name", ["\u202eevil\u202c", "Alice\u200b", "Bob\u0085", "x\u2028y"])
def test_a_display_name_from_the_identity_provider_that_could_disguise_itself_is_not_used(name: str) -> None:
    claims = {"sub": "mallory", "preferred_username": name, "groups": []}
    assert ClaimMapping().identity(claims, expires_at=None).display_name is None
    plain = {**claims, "preferred_username": "Mallory Ä. Ørsted"}
    assert ClaimMapping().identity(plain, expires_at=None).display_name == "Mallory Ä. Ørsted"


def test_a_stored_display_name_with_a_bidi_override_reaches_the_reviewer_as_a_visible_escape(
    runtime: Runtime, tokens: dict[str, str], clock: FrozenClock
) -> None:
    alice = runtime.tokens.authenticate(tokens["alice"])
    made = requests.submit(runtime.ctx, alice, role="prod-shell", reason="INC-1", duration="30m")
    spoof = "Root Admin \u202e)toor("  # reads "Root Admin (root)" to a reviewer
    WebSessions(runtime.ctx.db, clock, idle=timedelta(hours=1), maximum=timedelta(hours=8)).open(
        Identity("alice", frozenset({"engineers"}), display_name=spoof), None
    )
    root, _ = signed_in(runtime, tokens["root"])
    with root:
        page = root.get(f"/ui/requests/{made['id']}")
    assert page.status_code == 200
    assert "\u202e" not in page.text
    assert "Root Admin \\u202e)toor( (<code>alice</code>)" in page.text


def test_an_id_quoted_in_a_pages_message_cannot_disguise_itself_or_fill_the_page(
    runtime: Runtime, tokens: dict[str, str]
) -> None:
    alice, csrf = signed_in(runtime, tokens["alice"])
    with alice:
        shown = [
            alice.get("/ui/requests/r-1%E2%80%AE%E2%80%8Bmoc.live"),
            alice.post("/ui/grants/g-%E2%80%AE1/revoke", data={"csrf": csrf}, headers={"Origin": ORIGIN}),
            alice.get("/ui/grants/" + "g" * 5000),
        ]
    for page in shown:
        assert page.status_code == 404
        assert "\u202e" not in page.text
        assert "\u200b" not in page.text
    assert alert(shown[0].text) == "no request r-1\\u202e\\u200bmoc.live"
    assert alert(shown[1].text) == "no grant g-\\u202e1"
    assert len(alert(shown[2].text)) == 500


@pytest.mark.parametrize(
    "edit",
    [
        {"details": None},
        {"details": "edited"},
        {"details": [1, 2]},
        {"at": "2026-12-01T09:00:00"},
        {"request_id": ["r-1"]},
    ],
)
def test_a_record_edited_into_json_of_the_wrong_shape_is_shown_as_damaged(
    runtime: Runtime, tokens: dict[str, str], edit: dict[str, object]
) -> None:
    with runtime.ctx.db.engine.begin() as conn:
        body = conn.execute(sa.select(audit_events.c.body).where(audit_events.c.seq == 2)).scalar_one()
        edited = json.dumps({**json.loads(body), **edit})
        conn.execute(audit_events.update().where(audit_events.c.seq == 2).values(body=edited))
    root, _ = signed_in(runtime, tokens["root"])
    with root:
        pages = [
            root.get("/ui/audit"),
            root.get("/ui/audit?action=user."),
            root.get(f"/ui/audit?actor={SYSTEM.name}"),
        ]
        api = root.get("/api/v1/audit?limit=100", headers={"Authorization": f"Bearer {tokens['root']}"})
    for page in pages:
        assert page.status_code == 200
        assert "<dt>damaged</dt><dd>the body of record 2 is not an audit record" in page.text
    assert api.status_code == 200
    (damaged,) = [e for e in api.json() if e["seq"] == 2]
    assert damaged["action"] == "user.added"  # from the record's filter columns


@pytest.mark.parametrize("moved_from", ["yesterday", "2026-12-01T09:00:00", 1733043600])
def test_an_extension_whose_audited_times_were_edited_still_shows_its_page(
    runtime: Runtime, tokens: dict[str, str], moved_from: object
) -> None:
    alice = runtime.tokens.authenticate(tokens["alice"])
    root = runtime.tokens.authenticate(tokens["root"])
    grant = requests.submit(runtime.ctx, alice, role="stage-shell", duration="10m")["grant"]["id"]
    extension = grants.extend(runtime.ctx, alice, grant, duration="5m")["id"]
    if extension_state(runtime, extension) == "PENDING":
        requests.review(runtime.ctx, root, extension, verdict=Verdict.APPROVE)
    with runtime.ctx.db.engine.begin() as conn:
        where = (audit_events.c.request_id == extension) & (audit_events.c.action == "grant.extended")
        body = json.loads(conn.execute(sa.select(audit_events.c.body).where(where)).scalar_one())
        body["details"]["from"] = moved_from
        conn.execute(audit_events.update().where(where).values(body=json.dumps(body)))
    client, _ = signed_in(runtime, tokens["alice"])
    with client:
        page = client.get(f"/ui/requests/{extension}")
    assert page.status_code == 200
    assert f'Extends grant <a href="/ui/grants/{grant}">' in page.text


def extension_state(runtime: Runtime, request_id: str) -> str:
    with runtime.ctx.db.read() as conn:
        return str(
            conn.execute(
                sa.select(tables.requests.c.state).where(tables.requests.c.id == request_id)
            ).scalar_one()
        )
