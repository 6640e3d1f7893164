"""The admin pages: for admins only (a 403 page for anyone else, whose forms do nothing), listing
grants in force, pending revocations, users, tokens (never a secret), SSH keys and gateway
sessions, each write going through the workflow, which audits it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from integration.web.test_audit_page import PEOPLE, form_token, people, signed_in
from jitgate.audit.query import query
from jitgate.runtime import Runtime
from jitgate.store import queries as q
from jitgate.store.tables import api_tokens
from support.admin_world import Furnished, furnish

__all__ = ["people"]  # fixture shared with test_audit_page
PAGES = [
    "/ui/admin",
    "/ui/admin/grants",
    "/ui/admin/revocations",
    "/ui/admin/users",
    "/ui/admin/tokens",
    "/ui/admin/keys",
    "/ui/admin/sessions",
]


@pytest.fixture
def world(runtime: Runtime, people: dict[str, str], tmp_path: Path) -> Furnished:
    return furnish(runtime, runtime.tokens.authenticate(people["alice"]), tmp_path / "keys")


def grant_state(runtime: Runtime, grant_id: str) -> str:
    with runtime.ctx.db.read() as conn:
        grant = q.get_grant(conn, grant_id)
    assert grant is not None
    return grant.state.value


@pytest.mark.parametrize("who", ["alice", "bob", "audra"])
def test_the_admin_pages_are_a_403_for_anyone_but_an_admin(
    runtime: Runtime, people: dict[str, str], world: Furnished, who: str
) -> None:
    client = signed_in(runtime, people[who])
    assert ">Admin<" not in client.get("/ui/audit").text
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 403, path
        assert "only admins may use the admin pages" in page.text
        assert world.grant not in page.text
        assert world.fingerprint not in page.text
    client.__exit__(None, None, None)


@pytest.mark.parametrize("who", ["alice", "bob", "audra"])
def test_an_admin_form_posted_by_anyone_else_does_nothing(
    runtime: Runtime, people: dict[str, str], world: Furnished, who: str
) -> None:
    client = signed_in(runtime, people[who])
    csrf = form_token(client)
    with runtime.ctx.db.read() as conn:
        (token_id,) = conn.execute(
            sa.select(api_tokens.c.id).where(api_tokens.c.user_name == "root")
        ).scalars()
        before = len(query(conn, limit=10_000))
    for url in (
        f"/ui/admin/grants/{world.grant}/revoke",
        f"/ui/admin/tokens/{token_id}/revoke",
        f"/ui/admin/keys/{world.key}/remove",
        f"/ui/admin/sessions/{world.session}/kill",
        "/ui/admin/users/alice/disabled",
    ):
        refused = client.post(url, data={"csrf": csrf, "reason": "no", "disabled": "yes"})
        assert refused.status_code == 403, url
    assert grant_state(runtime, world.grant) == "ACTIVE"
    assert runtime.tokens.authenticate(people["root"]).admin
    assert runtime.tokens.authenticate(people["alice"]).name == "alice"  # not disabled
    with runtime.ctx.db.read() as conn:
        assert len(query(conn, limit=10_000)) == before
    admin = signed_in(runtime, people["root"])
    assert world.fingerprint in admin.get("/ui/admin/keys").text
    assert "being ended" not in admin.get("/ui/admin/sessions").text
    client.__exit__(None, None, None)
    admin.__exit__(None, None, None)


def test_an_admin_revokes_someone_elses_grant_from_the_grants_page_and_it_is_audited(
    runtime: Runtime, people: dict[str, str], world: Furnished
) -> None:
    client = signed_in(runtime, people["root"])
    page = client.get("/ui/admin/grants")
    assert page.status_code == 200
    row = re.search(
        rf'<a href="/ui/grants/{world.grant}"><code>{world.grant}</code></a>.*?</tr>', page.text, re.S
    )
    assert row is not None
    assert "<td>alice</td><td>stage-shell</td><td>stage-1</td>" in row.group(0)
    assert re.search(r"<td>(19|20)m[0-9]*s?</td>", row.group(0))  # time left
    done = client.post(
        f"/ui/admin/grants/{world.grant}/revoke", data={"csrf": form_token(client), "comment": "offboarding"}
    )
    assert f"grant {world.grant} revoked" in done.text
    assert done.url.path == "/ui/admin/grants"
    assert grant_state(runtime, world.grant) == "REVOKED"
    with runtime.ctx.db.read() as conn:
        (record,) = query(conn, grant_id=world.grant, action="grant.revoked")
    assert record.actor == "root"
    assert record.details["comment"] == "offboarding"
    assert world.grant not in client.get("/ui/admin/grants").text
    client.__exit__(None, None, None)


def test_the_lists_show_revocations_users_keys_and_sessions(
    runtime: Runtime, people: dict[str, str], world: Furnished
) -> None:
    client = signed_in(runtime, people["root"])
    index = client.get("/ui/admin").text
    for path in PAGES[1:]:
        assert f'href="{path}"' in index
    assert '<a href="/ui/admin">Admin</a>' in index
    revocations = client.get("/ui/admin/revocations").text
    assert f"/ui/grants/{world.revocation_grant}" in revocations
    assert "<code>serial-41</code></td>\n      <td>1</td>" in revocations
    assert "target &lt;unreachable&gt;" in revocations
    users = client.get("/ui/admin/users").text
    assert "<td>audra</td><td>user</td><td>auditors</td>" in users
    assert "<td>root</td><td>user</td><td></td>\n      <td>admin</td>" in users
    assert 'action="/ui/admin/users/alice/disabled"' in users
    assert 'action="/ui/admin/users/root/disabled"><input type="hidden" name="csrf" value="' in users
    assert users.count('value="yes">Disable</button>') == len(PEOPLE)  # not oneself
    keys = client.get("/ui/admin/keys?user=alice").text
    assert world.fingerprint in keys
    assert "alice@laptop" in keys
    assert world.fingerprint not in client.get("/ui/admin/keys?user=bob").text
    sessions = client.get("/ui/admin/sessions").text
    live, everyone = sessions.split("All gateway sessions")
    assert world.session in live
    assert f"/ui/admin/sessions/{world.session}/kill" in live
    assert world.session in everyone
    client.__exit__(None, None, None)


def test_an_admin_disables_a_user_ending_what_they_hold_and_enables_them_again(
    runtime: Runtime, people: dict[str, str], world: Furnished
) -> None:
    alice = signed_in(runtime, people["alice"])
    client = signed_in(runtime, people["root"])
    csrf = form_token(client)
    done = client.post("/ui/admin/users/alice/disabled", data={"csrf": csrf, "disabled": "yes"})
    assert "user alice disabled" in done.text
    assert '<td><span class="flag">disabled</span></td>' in done.text
    assert grant_state(runtime, world.grant) == "REVOKED"
    assert alice.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"
    with runtime.ctx.db.read() as conn:
        (record,) = query(conn, action="user.disabled")
    assert record.actor == "root"
    assert world.grant in record.details["grants_revoked"]
    again = client.post("/ui/admin/users/alice/disabled", data={"csrf": csrf, "disabled": "no"})
    assert "user alice enabled" in again.text
    assert runtime.tokens.authenticate(people["alice"]).name == "alice"
    itself = client.post("/ui/admin/users/root/disabled", data={"csrf": csrf, "disabled": "yes"})
    assert "you cannot disable yourself" in itself.text
    client.__exit__(None, None, None)
    alice.__exit__(None, None, None)


def test_the_tokens_page_never_shows_a_secret_and_revokes_a_token(
    runtime: Runtime, people: dict[str, str], world: Furnished
) -> None:
    client = signed_in(runtime, people["root"])
    page = client.get("/ui/admin/tokens").text
    with runtime.ctx.db.read() as conn:
        rows = conn.execute(sa.select(api_tokens.c.id, api_tokens.c.token_hash, api_tokens.c.user_name)).all()
    for token_id, digest, _ in rows:
        assert f"<code>{token_id}</code>" in page
        assert digest not in page
    for secret in people.values():
        assert secret not in page
        assert secret[3:20] not in page
    assert "jg_" not in page
    (bobs,) = [token_id for token_id, _, user in rows if user == "bob"]
    done = client.post(f"/ui/admin/tokens/{bobs}/revoke", data={"csrf": form_token(client)})
    assert f"token {bobs} of bob revoked" in done.text
    with pytest.raises(Exception, match="revoked"):
        runtime.tokens.authenticate(people["bob"])
    assert f"/ui/admin/tokens/{bobs}/revoke" not in client.get("/ui/admin/tokens?user=bob").text
    client.__exit__(None, None, None)


def test_a_cursor_the_broker_did_not_hand_out_is_a_400(runtime: Runtime, people: dict[str, str]) -> None:
    client: TestClient = signed_in(runtime, people["root"])
    for path in (
        "/ui/admin/grants?grants_cursor=x",
        "/ui/admin/sessions?live_before=!!",
        "/ui/admin/users?users_cursor=Zm9v",
    ):
        page = client.get(path)
        assert page.status_code == 400, path
        assert "cursor is not one this broker handed out" in page.text
    client.__exit__(None, None, None)
