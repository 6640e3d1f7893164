"""The console's connect commands for each kind of target, and the time left as pages print it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jitgate.policy.loader import parse_policy
from jitgate.web.connect import connect_commands
from jitgate.web.display import time_left
from support import TEST_POLICY

POLICY = parse_policy(
    TEST_POLICY.replace(
        "roles:\n",
        """  - {name: orders-db, kind: postgres, admin_dsn_env: ORDERS_DSN, labels: {app: orders}}
  - {name: orders-my, kind: mariadb, admin_dsn_env: ORDERS_MY_DSN, labels: {app: orders}}
roles:
  - name: orders
    targets: {labels: {app: orders}}
    postgres: {member_of: [reader]}
    mariadb: {roles: [reader]}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
  - name: web-two-logins
    targets: {names: [web-1]}
    ssh: {logins: [deploy, admin]}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
""",
        1,
    )
)


def lines(role: str, targets: list[str], *, gateway: bool = False) -> list[str]:
    return [c.line for c in connect_commands(POLICY, role, targets, gateway=gateway)]


def test_ssh_targets_connect_directly_and_through_the_gateway_when_it_runs() -> None:
    assert lines("prod-shell", ["web-1", "web-2"]) == ["jitgate ssh web-1", "jitgate ssh web-2"]
    assert lines("prod-shell", ["web-1"], gateway=True) == [
        "jitgate ssh web-1",
        "jitgate ssh web-1 --via-gateway",
    ]
    assert lines("web-two-logins", ["web-1"]) == ["jitgate ssh web-1", "jitgate ssh web-1 --login admin"]


def test_database_targets_get_a_fresh_login_and_other_kinds_no_command() -> None:
    assert lines("orders", ["orders-db", "orders-my"]) == [
        "jitgate db orders-db --exec",
        "jitgate db orders-my",
    ]
    assert lines("vault-read", ["vault-1"]) == []
    assert lines("no-such-role", ["web-1"]) == []


def test_the_time_left_reads_like_the_countdown_script_writes_it() -> None:
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    assert time_left(now + timedelta(minutes=29, seconds=59), now) == "29m 59s left"
    assert time_left(now + timedelta(hours=1, seconds=3), now) == "1h 0m 3s left"
    assert time_left(now + timedelta(days=2, minutes=1), now) == "2d 0h 1m 0s left"
    assert time_left(now + timedelta(milliseconds=300), now) == "1s left"
    assert time_left(now, now) == "expired"
    assert time_left(now - timedelta(seconds=5), now) == "expired"
