"""The console shows what each grant changed at its targets: on the home page's list of grants and
on a grant's own page, each group held, withdrawn (and when) or kept because it was held before,
and the work still pending while the directory is down, with its last error; words a directory
sent back are shown as text, never as markup."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from integration.web.test_access_pages import text_of
from integration.web.test_pages import browser, sign_in
from jitgate.clock import FrozenClock
from jitgate.runtime import Runtime
from jitgate.store.tables import elevations, revocations
from support.elevated_grants import GROUP, OTHER, PRIOR, ElevatedGrants, elevated_grants

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>\u202e'


@pytest.fixture
def world(runtime: Runtime, clock: FrozenClock) -> ElevatedGrants:
    return elevated_grants(runtime, clock)


@pytest.fixture
def console(world: ElevatedGrants) -> TestClient:
    client = browser(world.runtime)
    sign_in(client, world.token)
    return client


def test_the_home_page_lists_what_each_grant_changed_at_its_targets(
    console: TestClient, world: ElevatedGrants
) -> None:
    page = text_of(console.get("/ui/").text)
    assert f"corp-directory: joined {GROUP} as uid=alice (held)" in page
    assert f"corp-directory: joined {PRIOR} as uid=alice (kept: held before the grant)" in page
    assert f"corp-directory: joined {GROUP} as uid=alice (withdrawn at 2026-11-26 09:05:01 UTC)" in page
    assert f"corp-directory: joined {OTHER} as alice (planned)" in page
    assert (
        "corp-directory: pending: to be applied, 1 attempt failed, next at 2026-11-26 09:05:07 UTC, "
        "last error: target corp-directory: cannot connect: connection refused"
    ) in page


def test_a_grants_page_shows_its_own_changes_and_no_other_grants(
    console: TestClient, world: ElevatedGrants
) -> None:
    ended = console.get(f"/ui/grants/{world.ended}")
    assert ended.status_code == 200
    page = text_of(ended.text)
    assert "What it changed at its targets" in page
    assert f"joined {PRIOR} as uid=alice (kept: held before the grant)" in page
    assert f"joined {GROUP} as uid=alice (withdrawn at 2026-11-26 09:05:01 UTC)" in page
    assert "(held)" not in page
    waiting = text_of(console.get(f"/ui/grants/{world.pending}").text)
    assert f"corp-directory: joined {OTHER} as alice (planned)" in waiting
    assert "pending: to be applied, 1 attempt failed" in waiting
    shell = text_of(console.get(f"/ui/grants/{world.shell}").text)
    assert "What it changed at its targets" not in shell


def test_an_account_and_an_error_a_target_sent_back_are_shown_as_text(
    console: TestClient, world: ElevatedGrants
) -> None:
    with world.runtime.ctx.db.write() as conn:
        conn.execute(sa.update(elevations).where(elevations.c.grant_id == world.held).values(account=HOSTILE))
        conn.execute(
            sa.update(revocations).where(revocations.c.grant_id == world.pending).values(last_error=HOSTILE)
        )
    for path in ("/ui/", f"/ui/grants/{world.held}", f"/ui/grants/{world.pending}"):
        html = console.get(path).text
        assert "<script>alert(1)" not in html
        assert "<img src=x" not in html
        assert "\u202e" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "\\u202e" in html
