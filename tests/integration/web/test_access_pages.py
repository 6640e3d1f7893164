"""The console's access pages through a real app: the inbox, a request's page with everything a
reviewer decides on, a grant's page with its time left, credentials, connect commands and the
forms that extend and revoke it, and the role catalogue; each seen only by whom the API shows it
to, each keeping a refused form's input, each printing what others typed as text."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from integration.web.test_pages import browser, sign_in, tokens
from jitgate.api.app import create_app
from jitgate.auth.sessions import WebSessions
from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM, Identity
from jitgate.domain.model import Verdict
from jitgate.runtime import Runtime, build_runtime
from jitgate.settings import Settings
from jitgate.workflow import grants, requests
from jitgate.workflow.users import add_user
from support import TEST_POLICY
from support.sshkeys import public_line

__all__ = ["tokens"]  # fixture shared with test_pages

HOSTILE = 'INC-9 <script>alert(1)</script>"><img src=x onerror=alert(2)>'


def person(runtime: Runtime, clock: FrozenClock, name: str, *groups: str) -> str:
    return add_user(
        runtime.ctx.db, runtime.ctx.audit, clock, actor=SYSTEM.name, name=name, groups=list(groups)
    )[1]


def as_identity(runtime: Runtime, token: str) -> Identity:
    return runtime.tokens.authenticate(token)


def form_token(client: TestClient, path: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get(path).text)
    assert match is not None
    return match.group(1)


def text_of(html: str) -> str:
    """The page's text as a reader sees it: tags gone, whitespace collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_the_inbox_shows_a_pending_request_to_its_approver_and_not_to_the_requester(
    runtime: Runtime, tokens: dict[str, str]
) -> None:
    alice = as_identity(runtime, tokens["alice"])
    made = requests.submit(runtime.ctx, alice, role="prod-shell", reason="INC-3", duration="30m")
    with browser(runtime) as bob:
        sign_in(bob, tokens["bob"])
        inbox = bob.get("/ui/inbox")
        assert f'href="/ui/requests/{made["id"]}"' in inbox.text
        assert "Waiting for your review (1)" in inbox.text
        assert 'aria-label="1 waiting"' in inbox.text  # the count in the navigation
    with browser(runtime) as client:
        sign_in(client, tokens["alice"])
        inbox = client.get("/ui/inbox")
        assert made["id"] not in inbox.text
        assert "Nothing waits for your review." in inbox.text


def test_a_request_page_shows_what_a_reviewer_decides_on_and_why_they_may(
    runtime: Runtime, tokens: dict[str, str], clock: FrozenClock
) -> None:
    erin = person(runtime, clock, "erin", "sre-leads")
    alice = as_identity(runtime, tokens["alice"])
    made = requests.submit(runtime.ctx, alice, role="two-person", reason="CHG-12 rotate keys", duration="45m")
    requests.review(
        runtime.ctx, as_identity(runtime, erin), made["id"], verdict=Verdict.APPROVE, comment="looks right"
    )
    WebSessions(runtime.ctx.db, clock, idle=timedelta(hours=1), maximum=timedelta(hours=8)).open(
        Identity("alice", frozenset({"engineers"}), display_name="Alice Liddell"), None
    )
    with browser(runtime) as bob:
        sign_in(bob, tokens["bob"])
        page = bob.get(f"/ui/requests/{made['id']}")
        shown = text_of(page.text)
    assert page.status_code == 200
    for fact in (
        "Requester Alice Liddell ( alice )",
        "Role two-person",
        "Targets web-1",
        "Reason CHG-12 rotate keys",
        "Duration 45m",
        "State PENDING",
        f"Asked {clock.now():%Y-%m-%d %H:%M:%S} UTC",
        "Reviews (1 of 2 approvals)",
        "erin approve looks right",
        "You may review it: you match group:sre-leads in role two-person's approvers.",
    ):
        assert fact in shown, fact
    assert f'action="/ui/requests/{made["id"]}/review"' in page.text
    assert 'value="approve"' in page.text
    assert f'href="/ui/audit?request={made["id"]}"' in page.text


def test_the_requester_sees_why_they_may_not_review_their_own_request(
    runtime: Runtime, tokens: dict[str, str]
) -> None:
    made = requests.submit(
        runtime.ctx, as_identity(runtime, tokens["alice"]), role="prod-shell", reason="INC-1"
    )
    with browser(runtime) as alice:
        sign_in(alice, tokens["alice"])
        page = alice.get(f"/ui/requests/{made['id']}")
    assert "You may not review it: it is your own request" in text_of(page.text)
    assert 'value="approve"' not in page.text


def test_an_extension_shows_its_grant_and_how_far_it_moves_the_end_then_is_approved_on_its_page(
    runtime: Runtime, tokens: dict[str, str], clock: FrozenClock
) -> None:
    alice = as_identity(runtime, tokens["alice"])
    granted = requests.submit(runtime.ctx, alice, role="quick-fix", duration="10m")
    grant_id = granted["grant"]["id"]
    ends = clock.now() + timedelta(minutes=10)
    with browser(runtime) as client:
        csrf = sign_in(client, tokens["alice"])
        asked = client.post(
            f"/ui/grants/{grant_id}/extend", data={"csrf": csrf, "duration": "30m", "reason": "more"}
        )
        assert asked.status_code == 200
        extension = re.search(r"extension (r-[0-9a-f]+) is PENDING", asked.text)
        assert extension is not None, text_of(asked.text)
        assert extension.group(1) in asked.text  # listed on the grant's page
    rid = extension.group(1)
    with browser(runtime) as bob:
        csrf = sign_in(bob, tokens["bob"])
        page = bob.get(f"/ui/requests/{rid}")
        shown = text_of(page.text)
        assert f"Extends grant {grant_id} by 30m." in shown
        assert f"Expires now at {ends:%Y-%m-%d %H:%M:%S} UTC" in shown
        assert f"Would expire at {ends + timedelta(minutes=30):%Y-%m-%d %H:%M:%S} UTC" in shown
        assert f'href="/ui/grants/{grant_id}"' in page.text
        done = bob.post(
            f"/ui/requests/{rid}/review", data={"csrf": csrf, "verdict": "approve", "comment": "ok"}
        )
        assert done.url.path == f"/ui/requests/{rid}"
        shown = text_of(done.text)
        assert f"request {rid} is APPROVED" in shown
        assert f"Was to expire at {ends:%Y-%m-%d %H:%M:%S} UTC" in shown
        assert f"Extended to {ends + timedelta(minutes=30):%Y-%m-%d %H:%M:%S} UTC" in shown
        assert "bob approve ok" in shown


def test_approving_on_the_request_page_links_to_the_grant_it_made(
    runtime: Runtime, tokens: dict[str, str]
) -> None:
    made = requests.submit(
        runtime.ctx, as_identity(runtime, tokens["alice"]), role="prod-shell", reason="INC-8"
    )
    with browser(runtime) as bob:
        csrf = sign_in(bob, tokens["bob"])
        done = bob.post(f"/ui/requests/{made['id']}/review", data={"csrf": csrf, "verdict": "approve"})
    assert f"request {made['id']} is ACTIVE" in done.text
    grant = re.search(r'Grant <a href="/ui/grants/(g-[0-9a-f]+)">', done.text)
    assert grant is not None
    assert "You may not review it: it is no longer waiting for review." in text_of(done.text)


def test_nobody_sees_a_request_or_grant_that_is_not_theirs_to_see(
    runtime: Runtime, tokens: dict[str, str], clock: FrozenClock
) -> None:
    carol = as_identity(runtime, person(runtime, clock, "carol", "engineers"))
    asked = requests.submit(runtime.ctx, carol, role="prod-shell", reason="INC-2")
    held = requests.submit(runtime.ctx, carol, role="stage-shell", duration="10m")["grant"]["id"]
    with browser(runtime) as alice:
        sign_in(alice, tokens["alice"])
        for path, other, missing in (
            (f"/ui/requests/{asked['id']}", asked["id"], "r-000000000000"),
            (f"/ui/grants/{held}", held, "g-000000000000"),
        ):
            unseen = alice.get(path)
            absent = alice.get(path.replace(other, missing))
            assert unseen.status_code == absent.status_code == 404
            assert "INC-2" not in unseen.text
            assert unseen.text.replace(other, missing) == absent.text
    with browser(runtime) as bob:  # an approver of prod-shell sees the request, not the stage grant
        sign_in(bob, tokens["bob"])
        assert bob.get(f"/ui/requests/{asked['id']}").status_code == 200
        assert bob.get(f"/ui/grants/{held}").status_code == 404


def test_a_grant_page_counts_down_lists_credentials_and_says_how_to_connect(
    runtime: Runtime, tokens: dict[str, str], clock: FrozenClock, tmp_path: Path
) -> None:
    made = requests.submit(
        runtime.ctx, as_identity(runtime, tokens["alice"]), role="stage-shell", duration="30m"
    )
    grant_id = made["grant"]["id"]
    key = public_line(tmp_path, "id")
    api = TestClient(
        create_app(runtime, run_scheduler=False), headers={"Authorization": f"Bearer {tokens['alice']}"}
    )
    minted = api.post("/api/v1/ssh/certificates", json={"target": "stage-1", "public_key": key})
    assert minted.status_code == 201, minted.text
    clock.advance(timedelta(seconds=61))
    with browser(runtime) as alice:
        sign_in(alice, tokens["alice"])
        page = alice.get(f"/ui/grants/{grant_id}")
    shown = text_of(page.text)
    ends = clock.now() + timedelta(minutes=30) - timedelta(seconds=61)
    iso = ends.isoformat().replace("+00:00", "Z")
    assert f'<time class="left" datetime="{iso}" data-countdown' in page.text
    assert f"Expires {ends:%Y-%m-%d %H:%M:%S} UTC 28m 59s left" in shown
    assert "jitgate ssh stage-1" in shown
    assert "--via-gateway" not in shown  # no gateway runs
    assert f"ssh stage-1 {minted.json()['serial']} issued" in shown
    assert f'href="/ui/requests/{made["id"]}"' in page.text
    assert f'href="/ui/audit?grant={grant_id}"' in page.text
    assert '<script src="/ui/static/countdown.js" defer></script>' in page.text
    assert 'data-refresh="/ui/grants/' in page.text


DB_POLICY = TEST_POLICY.replace(
    "roles:\n",
    """  - name: orders-db
    kind: postgres
    address: 127.0.0.1
    admin_dsn_env: JITGATE_TEST_ORDERS_DSN
    labels: {app: orders}
  - name: orders-my
    kind: mariadb
    address: 127.0.0.1
    admin_dsn_env: JITGATE_TEST_ORDERS_MY_DSN
    labels: {app: orders}
roles:
  - name: orders-read
    description: Read the orders databases
    targets: {labels: {app: orders}}
    postgres: {member_of: [orders_reader]}
    mariadb: {privileges: [SELECT ON orders.*]}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
""",
    1,
)


def test_a_database_grant_says_how_to_connect_to_each_kind_of_database(
    tmp_path: Path, clock: FrozenClock
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(DB_POLICY)
    runtime = build_runtime(Settings(data_dir=tmp_path / "data", policy_file=policy), clock=clock)
    try:
        token = person(runtime, clock, "alice", "engineers")
        made = requests.submit(runtime.ctx, as_identity(runtime, token), role="orders-read", duration="20m")
        with browser(runtime) as alice:
            sign_in(alice, token)
            shown = text_of(alice.get(f"/ui/grants/{made['grant']['id']}").text)
            roles = text_of(alice.get("/ui/roles").text)
    finally:
        runtime.ctx.db.dispose()
    assert "jitgate db orders-db --exec psql with a fresh login" in shown
    assert "jitgate db orders-my a fresh login and its DSN for the mariadb client" in shown
    assert "jitgate ssh" not in shown
    assert "orders-read Read the orders databases" in roles
    assert "Targets orders-db (postgres), orders-my (mariadb)" in roles
    assert "Gives postgres login in orders_reader; mariadb login with SELECT ON orders.*" in roles


def test_the_role_catalogue_explains_what_one_may_ask_for_and_approve(
    runtime: Runtime, tokens: dict[str, str], clock: FrozenClock
) -> None:
    carol = person(runtime, clock, "carol", "engineers", "oncall")
    with browser(runtime) as client:
        sign_in(client, carol)
        shown = text_of(client.get("/ui/roles").text)
    mine = shown[shown.index("Roles you may ask for") :]
    assert "Targets web-1 (ssh), web-2 (ssh)" in mine
    assert "Gives ssh as deploy" in mine
    assert "Duration default 1h, from 1m up to 4h" in mine
    assert (
        "Approval one approval from group:sre-leads, never the requester; unreviewed requests lapse after 2h"
        in mine
    )
    assert "approved automatically for members of oncall (applies to you)" in mine
    assert "Reason required, matching ^(INC|CHG)-[0-9]+" in mine
    assert "Approval 2 approvals from group:sre-leads, user:admin" in mine
    assert "breakglass break-glass" in mine
    with browser(runtime) as bob:
        sign_in(bob, tokens["bob"])
        shown = text_of(bob.get("/ui/roles").text)
    approves = shown[shown.index("Roles you approve for others") :]
    assert "prod-shell" in approves
    assert "You you approve it as group:sre-leads" in approves
    assert "Roles you may ask for The policy lets you ask for no role." in shown


@pytest.mark.parametrize("where", ["request", "request text", "review", "extend"])
def test_a_refused_form_comes_back_with_what_was_typed_and_why(
    runtime: Runtime, tokens: dict[str, str], where: str
) -> None:
    alice = as_identity(runtime, tokens["alice"])
    pending = requests.submit(runtime.ctx, alice, role="prod-shell", reason="INC-4")
    grant_id = requests.submit(runtime.ctx, alice, role="stage-shell", duration="20m")["grant"]["id"]
    who = "bob" if where == "review" else "alice"
    with browser(runtime) as client:
        csrf = sign_in(client, tokens[who])
        if where == "request":
            typed = {"role": "prod-shell", "duration": "9h", "reason": "INC-77 <b>db</b>"}
            back = client.post("/ui/requests", data={"csrf": csrf, **typed})
            assert back.status_code == 403
            assert "9h is longer than role prod-shell&#39;s maximum of 4h" in back.text
            assert '<option value="prod-shell" selected>' in back.text
            assert 'name="duration" value="9h"' in back.text
            assert 'name="reason" value="INC-77 &lt;b&gt;db&lt;/b&gt;"' in back.text
        elif where == "request text":
            typed = {"role": "quick-fix", "duration": "5m", "reason": "INC-1 \u202eevil"}
            back = client.post("/ui/requests", data={"csrf": csrf, **typed})
            assert back.status_code == 422
            assert "reason contains U+202E" in back.text
            assert '<option value="quick-fix" selected>' in back.text
            # A refused character comes back as a visible escape, never as itself.
            assert 'name="reason" value="INC-1 \\u202eevil"' in back.text
            assert "\u202e" not in back.text
        elif where == "review":
            back = client.post(
                f"/ui/requests/{pending['id']}/review",
                data={"csrf": csrf, "verdict": "deny", "comment": "  "},
            )
            assert back.status_code == 400
            assert "a denial needs a comment saying why" in back.text
            assert (
                '<textarea id="review-comment" name="comment" rows="2" maxlength="2000">  </textarea>'
                in back.text
            )
            assert back.url.path == f"/ui/requests/{pending['id']}/review"
            assert 'data-refresh="/ui/requests/' in back.text  # a reload goes to the page, not the POST
        else:
            back = client.post(
                f"/ui/grants/{grant_id}/extend",
                data={"csrf": csrf, "duration": "25m", "reason": "INC-5 longer"},
            )
            assert back.status_code == 403
            assert "role stage-shell allows at most 30m" in back.text
            assert 'name="duration" value="25m"' in back.text
            assert 'name="reason" value="INC-5 longer"' in back.text
    assert 'role="alert"' in back.text


def test_a_stale_form_on_the_new_pages_is_refused_with_its_input_kept(
    runtime: Runtime, tokens: dict[str, str]
) -> None:
    grant_id = requests.submit(
        runtime.ctx, as_identity(runtime, tokens["alice"]), role="stage-shell", duration="10m"
    )["grant"]["id"]
    with browser(runtime) as alice:
        sign_in(alice, tokens["alice"])
        refused = alice.post(
            f"/ui/grants/{grant_id}/extend", data={"csrf": "0" * 32, "duration": "5m", "reason": "INC-1"}
        )
        assert refused.status_code == 403
        assert "stale or came from another site" in refused.text
        assert 'name="duration" value="5m"' in refused.text
    with runtime.ctx.db.read() as conn:
        from jitgate.store import queries as q

        assert q.extensions_of(conn, grant_id) == []


def test_hostile_text_is_text_on_every_new_page(
    runtime: Runtime, tokens: dict[str, str], clock: FrozenClock
) -> None:
    alice = as_identity(runtime, tokens["alice"])
    pending = requests.submit(runtime.ctx, alice, role="prod-shell", reason=HOSTILE)
    grant_id = requests.submit(runtime.ctx, alice, role="quick-fix", reason=HOSTILE, duration="10m")["grant"][
        "id"
    ]
    extension = grants.extend(runtime.ctx, alice, grant_id, duration="30m", reason=HOSTILE)
    requests.review(
        runtime.ctx, as_identity(runtime, tokens["bob"]), pending["id"], verdict=Verdict.DENY, comment=HOSTILE
    )
    pages = []
    with browser(runtime) as client:
        sign_in(client, tokens["alice"])
        pages += [
            client.get(p).text for p in ("/ui/", f"/ui/requests/{pending['id']}", f"/ui/grants/{grant_id}")
        ]
        csrf = form_token(client, "/ui/")
        pages.append(
            client.post(
                "/ui/requests", data={"csrf": csrf, "role": "prod-shell", "reason": HOSTILE + "x"}
            ).text
        )
        pages.append(
            client.post(
                f"/ui/grants/{grant_id}/extend", data={"csrf": csrf, "duration": "9h", "reason": HOSTILE}
            ).text
        )
    with browser(runtime) as bob:
        csrf = sign_in(bob, tokens["bob"])
        pages += [bob.get(p).text for p in ("/ui/inbox", f"/ui/requests/{extension['id']}", "/ui/roles")]
        pages.append(
            bob.post(
                f"/ui/requests/{extension['id']}/review",
                data={"csrf": csrf, "verdict": "deny", "comment": HOSTILE},
            ).text
        )
    for page in pages:
        assert "<script>alert" not in page
        assert "<img" not in page
    assert sum("&lt;script&gt;alert(1)&lt;/script&gt;" in page for page in pages) >= 7


def test_the_new_pages_show_no_message_taken_from_their_address(
    runtime: Runtime, tokens: dict[str, str]
) -> None:
    made = requests.submit(
        runtime.ctx, as_identity(runtime, tokens["alice"]), role="stage-shell", duration="5m"
    )
    with browser(runtime) as alice:
        sign_in(alice, tokens["alice"])
        for path in (
            "/ui/inbox",
            "/ui/roles",
            f"/ui/requests/{made['id']}",
            f"/ui/grants/{made['grant']['id']}",
        ):
            shown = alice.get(
                f"{path}?error=<script>alert(1)</script>&notice=paste+your+token+at+evil.example"
            )
            assert shown.status_code == 200
            assert 'role="alert"' not in shown.text
            assert 'role="status"' not in shown.text
            assert "evil.example" not in shown.text
            assert "alert(1)" not in shown.text


def test_reviewing_or_extending_what_one_may_not_see_answers_as_for_a_missing_id(
    runtime: Runtime, tokens: dict[str, str], clock: FrozenClock
) -> None:
    carol = as_identity(runtime, person(runtime, clock, "carol", "engineers"))
    asked = requests.submit(runtime.ctx, carol, role="prod-shell", reason="INC-2")
    held = requests.submit(runtime.ctx, carol, role="stage-shell", duration="10m")["grant"]["id"]
    with browser(runtime) as alice:
        csrf = sign_in(alice, tokens["alice"])
        for path, data in (
            (f"/ui/requests/{asked['id']}/review", {"verdict": "deny", "comment": "no"}),
            (f"/ui/grants/{held}/extend", {"duration": "5m", "reason": ""}),
            (f"/ui/grants/{held}/revoke", {}),
        ):
            refused = alice.post(path, data={"csrf": csrf, **data})
            assert refused.status_code == 404
            assert "INC-2" not in refused.text
    with runtime.ctx.db.read() as conn:
        from jitgate.store import queries as q

        assert q.reviews_of(conn, asked["id"]) == []
        assert q.extensions_of(conn, held) == []
        grant = q.get_grant(conn, held)
        assert grant is not None
        assert grant.state.value == "ACTIVE"
