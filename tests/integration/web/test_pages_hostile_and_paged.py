"""The web pages print what others typed as text, never as markup, in every template; and the
review queue and the requester's list page with older/newer links, so nothing is out of reach."""

from __future__ import annotations

import re
from datetime import timedelta
from importlib.resources import files

from integration.web.test_pages import browser, sign_in, tokens
from jitgate.clock import FrozenClock
from jitgate.runtime import Runtime
from jitgate.web.pages import templates as _templates

__all__ = ["tokens"]  # fixture shared with test_pages

REQUEST_ROW = r'<td><a href="/ui/requests/r-[0-9a-f]+"><code>(r-[0-9a-f]+)</code>'
HOSTILE = 'INC-7 "><img src=x onerror=alert(1)><b>approved</b> &amp; <!channel>'


def test_every_template_is_autoescaped_and_marks_nothing_safe() -> None:
    folder = files("jitgate") / "web" / "templates"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".html"))
    assert names
    for name in names:
        text = (folder / name).read_text()
        assert "|safe" not in text.replace(" ", "")
        assert "autoescape" not in text
        assert "Markup" not in text
        assert _templates.select_template([name]).render(who=None, error="<i>x</i>").count("<i>") == 0


def test_a_hostile_reason_is_text_on_every_page(runtime: Runtime, tokens: dict[str, str]) -> None:
    with browser(runtime) as alice:
        csrf = sign_in(alice, tokens["alice"])
        done = alice.post("/ui/requests", data={"csrf": csrf, "role": "prod-shell", "reason": HOSTILE})
        assert "is PENDING" in done.text
        pages = [done.text, alice.get("/ui/audit").text]
    with browser(runtime) as bob:
        csrf = sign_in(bob, tokens["bob"])
        queue = bob.get("/ui/inbox")
        rid = re.search(r"<code>(r-[0-9a-f]+)</code>", queue.text).group(1)  # type: ignore[union-attr]
        denied = bob.post(
            f"/ui/requests/{rid}/review", data={"csrf": csrf, "verdict": "deny", "comment": HOSTILE}
        )
        pages += [queue.text, denied.text, bob.get("/ui/audit").text]
    for page in pages:
        assert "<img" not in page
        assert "<b>approved" not in page
        assert "<!channel>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in queue.text
    assert "&amp;amp;" in queue.text  # an entity typed by the requester is shown, not decoded


def test_control_characters_from_the_browser_are_refused(runtime: Runtime, tokens: dict[str, str]) -> None:
    with browser(runtime) as alice:
        csrf = sign_in(alice, tokens["alice"])
        done = alice.post(
            "/ui/requests", data={"csrf": csrf, "role": "prod-shell", "reason": "INC-1 \u202eevil"}
        )
        assert "reason contains U+202E" in done.text
        assert "\u202e" not in done.text
        assert "My requests" in done.text
        assert "<code>r-" not in done.text


def test_the_review_queue_has_older_and_newer_pages(
    runtime: Runtime, tokens: dict[str, str], clock: FrozenClock
) -> None:
    runtime.ctx.max_pending_per_requester = 1000
    with browser(runtime) as alice:
        csrf = sign_in(alice, tokens["alice"])
        for n in range(120):
            clock.advance(timedelta(seconds=1))
            alice.post("/ui/requests", data={"csrf": csrf, "role": "prod-shell", "reason": f"INC-{n}"})
        mine = alice.get("/ui/")
        assert len(re.findall(REQUEST_ROW, mine.text)) == 50
    with browser(runtime) as bob:
        sign_in(bob, tokens["bob"])
        seen: list[str] = []
        page = bob.get("/ui/inbox")
        pages = [page]
        while True:
            seen += re.findall(REQUEST_ROW, page.text)
            older = re.search(r'<a href="([^"]+)">older', page.text)
            if older is None:
                break
            page = bob.get(older.group(1).replace("&amp;", "&"))
            pages.append(page)
        assert len(pages) == 3
        assert len(seen) == len(set(seen)) == 120
        assert "INC-0<" in page.text  # the oldest request is on the last page
        newer = re.search(r'<a href="([^"]+)">&larr; newer', page.text)
        assert newer is not None
        back = bob.get(newer.group(1).replace("&amp;", "&"))
        assert re.findall(REQUEST_ROW, back.text) == re.findall(REQUEST_ROW, pages[1].text)


def test_my_grants_have_older_pages_too(runtime: Runtime, tokens: dict[str, str], clock: FrozenClock) -> None:
    with browser(runtime) as alice:
        csrf = sign_in(alice, tokens["alice"])
        for _ in range(55):
            clock.advance(timedelta(seconds=1))
            alice.post("/ui/requests", data={"csrf": csrf, "role": "stage-shell", "duration": "20m"})
        first = alice.get("/ui/")
        grant_row = r'<td><a href="/ui/grants/g-[0-9a-f]+"><code>(g-[0-9a-f]+)</code>'
        shown = re.findall(grant_row, first.text)
        older = re.search(r'<a href="(/ui/\?grants_cursor=[^"]+)">older', first.text)
        assert older is not None
        rest = re.findall(grant_row, alice.get(older.group(1).replace("&amp;", "&")).text)
        assert len(shown) == 50
        assert len(rest) == 5
        assert not set(shown) & set(rest)
