"""The console's whole journey in real headless Chromium, signed in at the real OpenID provider.

A real ``jitgate server`` (``support/ssoserver.py``) and three people in their own browsers:
alice asks for a role, bob approves it from his inbox, alice watches her grant count down and
revokes it, dave (an admin through his group at the provider) reads exactly those records in the
audit trail, and alice signs out at the provider, after which her old session cookie opens
nothing. Every step is checked on what the page shows. Each main page is also checked for
Content Security Policy refusals and for fitting a 1280 px and a 375 px window.

With ``JITGATE_SCREENSHOTS=1`` the journey saves its pages as PNGs in ``docs/screenshots/``
(the ones the docs show); without it, it writes nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.chromium import chromium, csp_refusals, overflow, sign_in_at_provider
from support.ssoserver import SsoServer, sso_server

SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
SAVE = os.environ.get("JITGATE_SCREENSHOTS", "").strip() == "1"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
REASON = "INC-4711 restart the stuck payment worker"
COMMENT = "Go ahead; tell #ops when done"
POLICY = """
targets:
  - {name: web-1, kind: ssh, address: 127.0.0.1, labels: {env: prod}}
  - {name: web-2, kind: ssh, address: 127.0.0.2, labels: {env: prod}}
roles:
  - name: prod-shell
    description: A shell as deploy on the production web servers
    targets: {labels: {env: prod}}
    ssh: {logins: [deploy]}
    min_duration: 1s
    default_duration: 30m
    max_duration: 2h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
    reason: {required: true}
  - name: prod-root
    description: root on web-1, for the rare fix that needs it
    targets: {names: [web-1]}
    ssh: {logins: [root]}
    max_duration: 1h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
    approvals_required: 2
"""


@dataclass
class Person:
    """One person's browser: a context of their own (cookies), one page, what its CSP refused."""

    name: str
    context: Any
    page: Any
    refused: list[str] = field(default_factory=list)


@dataclass
class World:
    server: SsoServer
    browser: Any
    people: dict[str, Person] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)
    """What one step learns for the next: the request's and the grant's ids, alice's old cookie."""

    def person(self, name: str) -> Person:
        if name not in self.people:
            context = self.browser.new_context(viewport=DESKTOP)
            page = context.new_page()
            page.set_default_timeout(10_000)
            self.people[name] = Person(name, context, page, csp_refusals(page))
        return self.people[name]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with sso_server(tmp_path, POLICY) as server, chromium() as browser:
        built = World(server, browser)
        yield built
        for person in built.people.values():
            person.context.close()


def look(person: Person, shot: str | None = None, *, phone: str | None = None) -> None:
    """Check the page on screen fits a desktop and a phone window, saving it as ``shot``.png (and
    its phone view as ``phone``.png) when screenshots are asked for."""
    page = person.page
    assert overflow(page) == 0, f"{page.url} is wider than {DESKTOP['width']} px"
    if SAVE and shot:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{shot}.png"))
    page.set_viewport_size(PHONE)
    try:
        assert overflow(page) == 0, f"{page.url} is wider than {PHONE['width']} px"
        if SAVE and phone:
            page.screenshot(path=str(SCREENSHOTS / f"{phone}.png"))
    finally:
        page.set_viewport_size(DESKTOP)
    assert person.refused == [], person.refused


def sso_sign_in(world: World, name: str, *, shot: str | None = None) -> Person:
    """``name`` signs in with "Sign in with SSO" at the provider's sign-in page."""
    person = world.person(name)
    page = person.page
    page.goto(f"{world.server.url}/ui/login")
    if shot:
        look(person, shot)
    page.click("text=Sign in with SSO")
    page.wait_for_url(f"{world.server.provider.issuer}/interaction/**")
    sign_in_at_provider(page, name)
    page.wait_for_url(f"{world.server.url}/ui/")
    assert page.inner_text(".who").startswith(name), page.inner_text(".who")
    return person


def state_shown(page: Any) -> str:
    return str(page.locator("dl.facts .state").first.inner_text())


def alice_signs_in_with_sso_and_asks_for_a_role(world: World) -> None:
    alice = sso_sign_in(world, "alice", shot="sign-in")
    page = alice.page
    page.select_option("#ask-role", "prod-shell")
    page.fill("#ask-duration", "45m")
    page.fill("#ask-reason", REASON)
    page.click("button:text-is('Request')")
    page.wait_for_url(re.compile(r".*/ui/requests/r-[0-9a-f]+$"))
    assert state_shown(page) == "PENDING"
    assert re.search(r"request r-[0-9a-f]+ is PENDING", page.inner_text("[role=status]"))
    assert REASON in page.inner_text("dl.facts")
    world.facts["request"] = page.url.rsplit("/", 1)[1]
    look(alice)


def bob_finds_it_in_his_inbox_and_approves_it_with_a_comment(world: World) -> None:
    request_id = world.facts["request"]
    bob = sso_sign_in(world, "bob")
    page = bob.page
    assert page.inner_text("nav a[href='/ui/inbox'] .count") == "1"
    page.click("nav a[href='/ui/inbox']")
    row = page.locator("tbody tr", has=page.locator(f"a[href='/ui/requests/{request_id}']"))
    assert row.count() == 1
    assert "prod-shell" in row.inner_text()
    assert REASON in row.inner_text()
    look(bob, "inbox")

    page.goto(f"{world.server.url}/ui/roles")
    prod_shell = page.inner_text("#role-prod-shell")
    assert "A shell as deploy on the production web servers" in prod_shell
    assert "you approve it as group:sre-leads" in prod_shell
    assert page.locator("#role-prod-root").count() == 1
    look(bob, "roles")

    page.goto(f"{world.server.url}/ui/inbox")
    page.click(f"a[href='/ui/requests/{request_id}']")
    page.wait_for_url(f"**/ui/requests/{request_id}")
    assert state_shown(page) == "PENDING"
    assert page.inner_text("p.why").startswith("You may review it")
    look(bob, "request", phone="request-phone")
    page.fill("#review-comment", COMMENT)
    page.click("button[name=verdict][value=approve]")
    page.wait_for_url(f"**/ui/requests/{request_id}")
    assert state_shown(page) == "ACTIVE"  # approved, and starting at once
    reviews = page.inner_text("section[aria-labelledby=reviews-h] table")
    assert "approve" in reviews
    assert COMMENT in reviews
    assert page.locator("nav a[href='/ui/inbox'] .count").count() == 0  # nothing waits any more
    look(bob)


def alice_sees_her_grant_active_and_counting_down(world: World) -> None:
    alice = world.people["alice"]
    page = alice.page
    page.goto(f"{world.server.url}/ui/requests/{world.facts['request']}")
    assert state_shown(page) == "ACTIVE"
    page.click("section[aria-labelledby=links-h] a[href^='/ui/grants/g-']")
    page.wait_for_url(re.compile(r".*/ui/grants/g-[0-9a-f]+$"))
    world.facts["grant"] = page.url.rsplit("/", 1)[1]
    assert state_shown(page) == "ACTIVE"
    countdown = page.locator("time[data-countdown]")
    first = countdown.inner_text()
    assert re.fullmatch(r"(4[0-4]m [0-9]+s|45m 0s) left", first), first  # of 45m, a little gone
    page.wait_for_function(
        "(first) => document.querySelector('time[data-countdown]').textContent !== first",
        arg=first,
        timeout=3000,
    )
    assert re.fullmatch(r"4[0-4]m [0-9]+s left", countdown.inner_text()), countdown.inner_text()
    look(alice, "grant", phone="grant-phone")

    page.goto(f"{world.server.url}/ui/")
    row = page.locator("tbody tr", has=page.locator(f"a[href='/ui/grants/{world.facts['grant']}']"))
    assert "ACTIVE" in row.inner_text()
    look(alice, "access", phone="access-phone")


def dave_the_admin_sees_the_grant_in_force(world: World) -> None:
    dave = sso_sign_in(world, "dave")
    page = dave.page
    assert "(admin)" in page.inner_text(".who")
    page.goto(f"{world.server.url}/ui/admin/grants")
    row = page.locator("tr", has=page.locator(f"a[href='/ui/grants/{world.facts['grant']}']"))
    assert row.count() == 1
    assert "oidc:alice" in row.inner_text()
    assert "ACTIVE" in row.inner_text()
    look(dave, "admin-grants")


def alice_revokes_her_grant_from_its_page(world: World) -> None:
    alice = world.people["alice"]
    page = alice.page
    grant_page = f"{world.server.url}/ui/grants/{world.facts['grant']}"
    page.goto(grant_page)
    page.click("button:text-is('Revoke now')")
    page.wait_for_url(grant_page)
    assert state_shown(page) == "REVOKED"
    assert page.locator("button:text-is('Revoke now')").count() == 0
    assert page.locator("time[data-countdown]").count() == 0
    look(alice)


def audit_rows(page: Any) -> list[tuple[str, str]]:
    """(who, what) of each record the audit page shows, oldest first."""
    cells = page.eval_on_selector_all(
        "table.audit tr:has(td)", "rows => rows.map(r => [r.cells[2].textContent, r.cells[3].textContent])"
    )
    return [(who, what) for who, what in reversed(cells)]


def dave_filters_the_audit_trail_down_to_the_journey(world: World) -> None:
    dave = world.people["dave"]
    page = dave.page
    request_id, grant_id = world.facts["request"], world.facts["grant"]
    page.goto(f"{world.server.url}/ui/audit")
    page.fill("input[name=request]", request_id)
    page.click("button:text-is('Filter')")
    page.wait_for_url(re.compile(rf".*/ui/audit\?.*request={request_id}"))
    assert audit_rows(page) == [
        ("oidc:alice", "request.created"),
        ("oidc:bob", "review.approved"),
        ("oidc:bob", "grant.activated"),
        ("oidc:alice", "grant.revoked"),
    ]
    links = page.eval_on_selector_all("table.audit a[href^='/ui/grants/']", "a => a.map(x => x.textContent)")
    assert set(links) == {grant_id}
    look(dave, "audit", phone="audit-phone")

    page.fill("input[name=request]", "")
    page.fill("input[name=actor]", "oidc:bob")
    page.fill("input[name=action]", "review.")
    page.click("button:text-is('Filter')")
    page.wait_for_url(re.compile(r".*/ui/audit\?.*actor=oidc%3Abob"))
    assert audit_rows(page) == [("oidc:bob", "review.approved")]
    look(dave)


def alice_signs_out_at_the_provider_and_her_old_cookie_opens_nothing(world: World) -> None:
    alice = world.people["alice"]
    page, server = alice.page, world.server
    old = [c for c in alice.context.cookies() if c["name"] == "jitgate_session"]
    assert len(old) == 1
    page.goto(f"{server.url}/ui/")
    page.click("button:text-is('Sign out')")
    page.wait_for_url(f"{server.provider.issuer}/session/end**")
    page.click("button >> nth=0")  # the provider asks to confirm
    page.wait_for_url(server.signed_out)
    assert page.inner_text("[role=status]") == "You have signed out."
    assert page.locator("text=Sign in with SSO").count() == 1

    alice.context.add_cookies(old)  # the browser forgot it; someone who kept a copy tries it
    page.goto(f"{server.url}/ui/")
    assert page.url == f"{server.url}/ui/login"
    replayed = httpx.get(f"{server.url}/ui/", cookies={"jitgate_session": old[0]["value"]})
    assert replayed.status_code == 303
    assert replayed.headers["location"] == "/ui/login"
    assert alice.refused == []


def test_a_request_goes_from_sso_sign_in_through_approval_and_revocation_to_sign_out(world: World) -> None:
    """The steps above, in order: each one's page is where the next one starts."""
    alice_signs_in_with_sso_and_asks_for_a_role(world)
    bob_finds_it_in_his_inbox_and_approves_it_with_a_comment(world)
    alice_sees_her_grant_active_and_counting_down(world)
    dave_the_admin_sees_the_grant_in_force(world)
    alice_revokes_her_grant_from_its_page(world)
    dave_filters_the_audit_trail_down_to_the_journey(world)
    alice_signs_out_at_the_provider_and_her_old_cookie_opens_nothing(world)
