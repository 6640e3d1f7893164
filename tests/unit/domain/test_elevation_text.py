"""What a grant's elevation changed at its target, in the words ``jitgate grants`` and the console
print: the change per kind of target, each item's state or outcome, and the work still pending."""

from __future__ import annotations

from typing import Any

from jitgate.domain.elevation_text import grant_lines, lines


def when(value: str | None) -> str:
    return f"<{value}>"


def entry(
    kind: str, account: str, *items: dict[str, Any], pending: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"target": "t", "kind": kind, "account": account, "items": list(items), "pending": pending}


def item(name: str, state: str, outcome: str | None = None, released_at: str | None = None) -> dict[str, Any]:
    return {"item": name, "state": state, "prior": False, "outcome": outcome, "released_at": released_at}


def test_each_kind_of_target_says_what_was_given_to_whom() -> None:
    assert lines(entry("postgres", "alice", item("orders_admin", "held")), when) == [
        "t: role orders_admin granted to login alice (held)"
    ]
    assert lines(entry("mariadb", "alice@%", item("shop_admin", "applying")), when) == [
        "t: role shop_admin granted to account alice@% (being applied)"
    ]
    assert lines(entry("ldap", "uid=alice,dc=x", item("cn=ops,dc=x", "planned")), when) == [
        "t: joined cn=ops,dc=x as uid=alice,dc=x (planned)"
    ]
    assert lines(entry("vault", "alice", item("admin", "held")), when) == ["t: admin given to alice (held)"]


def test_a_released_item_says_when_it_was_withdrawn_or_why_it_was_kept() -> None:
    shown = lines(
        entry(
            "ldap",
            "uid=alice",
            item("cn=a", "released", "withdrawn", "2026-12-02T10:42:00Z"),
            item("cn=b", "released", "kept: held before the grant"),
            item("cn=c", "released", "kept: still held under grant g-2"),
            item("cn=d", "released", "never applied"),
        ),
        when,
    )
    assert shown == [
        "t: joined cn=a as uid=alice (withdrawn at <2026-12-02T10:42:00Z>)",
        "t: joined cn=b as uid=alice (kept: held before the grant)",
        "t: joined cn=c as uid=alice (kept: still held under grant g-2)",
        "t: joined cn=d as uid=alice (never applied)",
    ]


def test_pending_work_says_what_is_left_to_do_and_how_it_went_so_far() -> None:
    due = {"action": "elevate", "attempts": 0, "last_error": None, "next_attempt_at": "2026-12-02T10:00:00Z"}
    assert lines(entry("postgres", "alice", item("r", "planned"), pending=due), when)[-1] == (
        "t: pending: to be applied"
    )
    failing = {
        "action": "withdraw",
        "attempts": 3,
        "last_error": "target t: cannot connect: connection refused",
        "next_attempt_at": "2026-12-02T10:05:00Z",
    }
    assert lines(entry("postgres", "alice", item("r", "held"), pending=failing), when)[-1] == (
        "t: pending: to be taken back, 3 attempts failed, next at <2026-12-02T10:05:00Z>, "
        "last error: target t: cannot connect: connection refused"
    )


def test_a_grant_from_a_broker_that_does_not_say_has_no_lines() -> None:
    assert grant_lines({"id": "g-1"}, when) == []
    assert grant_lines({"id": "g-1", "elevations": []}, when) == []
