"""Access ends while the audit log is broken, through the whole stack: a real ``jitgate server``, the
HTTP API, a real PostgreSQL and a real MariaDB target, and one row of the broker's database edited
by hand (the signed audit head).

Revoking still answers 200 to an admin and to the holder, a grant still expires on time, and both
logins are dropped at their servers; granting is refused with a one-line 503; ``/healthz`` says
``degraded``, ``/metrics`` says ``jitgate_audit_healthy 0``, and the server logs the breakage once.
A broker restarted meanwhile starts and does the same. ``jitgate audit repair`` then re-seals the
log, records the damage and appends what was parked, and ``jitgate audit verify`` passes again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
import psycopg
import pymysql
import pytest
from dbkit import MARIADB_HOST, MARIADB_PORT, PG_HOST, PG_PORT, MariadbEnv, PgEnv, mariadb_root
from test_revocation_end_to_end import (
    MARIADB_DSN_ENV,
    PG_DSN_ENV,
    Broker,
    make_broker,
    offline,
    pg_login_exists,
    poll,
)

__all__ = ["make_broker"]  # the fixture, shared with the revocation end-to-end tests

# Lag of the expiry past the grant's end: the lifecycle loop sleeps until that deadline (or
# polls every second), so a second or two covers a loaded machine.
EXPIRY_LAG = timedelta(seconds=3)


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def edit_audit_head(broker: Broker) -> None:
    """What someone with write access to the broker's database does: change one row."""
    with sqlite3.connect(broker.data / "jitgate.db") as db:
        db.execute("UPDATE audit_head SET hash = ?", ("0" * 64,))


def grant_for(broker: Broker, role: str, duration: str) -> dict[str, object]:
    req = broker.call("alice", "POST", "/api/v1/requests", json={"role": role, "duration": duration})
    assert req["state"] == "ACTIVE", req
    grant: dict[str, object] = req["grant"]
    return grant


def login_on(broker: Broker, target: str) -> dict[str, str]:
    with broker.client("alice") as http:
        response = http.post("/api/v1/db/credentials", json={"target": target})
    assert response.status_code == 201, response.text
    found: dict[str, str] = response.json()
    return found


def health(broker: Broker) -> dict[str, object]:
    response = httpx.get(f"{broker.url}/healthz")
    assert response.status_code == 200, response.text  # degraded, still in service: it ends access
    found: dict[str, object] = response.json()
    return found


def export_actions(broker: Broker) -> list[dict[str, object]]:
    done = offline("audit", "export", "--data-dir", str(broker.data))
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def log_mentions(broker: Broker, text: str) -> list[int]:
    return [log.read_text().count(text) for log in broker.logs]


@pytest.mark.postgres
@pytest.mark.mariadb
def test_access_ends_at_real_targets_while_the_audit_head_is_edited_and_repair_restores_the_log(
    pg_env: PgEnv, mariadb_env: MariadbEnv, make_broker: Callable[[str, dict[str, str]], Broker]
) -> None:
    policy = f"""
targets:
  - name: orders-db
    kind: postgres
    address: {PG_HOST}
    port: {PG_PORT}
    admin_dsn_env: {PG_DSN_ENV}
  - name: shop-db
    kind: mariadb
    address: {MARIADB_HOST}
    port: {MARIADB_PORT}
    admin_dsn_env: {MARIADB_DSN_ENV}
roles:
  - name: orders-read
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [{pg_env.readonly}]}}
    min_duration: 1s
    max_duration: 30m
    requesters: [group:analysts]
    approval: auto
  - name: shop-read
    targets: {{names: [shop-db]}}
    mariadb: {{roles: [{mariadb_env.readonly}]}}
    min_duration: 1s
    max_duration: 30m
    requesters: [group:analysts]
    approval: auto
"""
    broker = make_broker(policy, {PG_DSN_ENV: pg_env.admin_dsn(), MARIADB_DSN_ENV: mariadb_env.admin_dsn()})
    broker.start()
    assert health(broker)["status"] == "ok"
    assert broker.metric("jitgate_audit_healthy") == 1

    shop = grant_for(broker, "shop-read", "30m")
    maria = login_on(broker, "shop-db")
    spare = grant_for(broker, "shop-read", "30m")
    orders = grant_for(broker, "orders-read", "6s")
    pg = login_on(broker, "orders-db")
    pg_session = psycopg.connect(pg["dsn"], autocommit=True)
    maria_session = pymysql.connect(
        host=MARIADB_HOST,
        port=MARIADB_PORT,
        user=maria["user"],
        password=maria["password"],
        database=mariadb_env.database,
        autocommit=True,
    )

    def maria_login_exists() -> bool:
        with mariadb_root() as root, root.cursor() as cur:
            cur.execute("SELECT 1 FROM mysql.user WHERE User = %s", (maria["user"],))
            return cur.fetchone() is not None

    try:
        edit_audit_head(broker)

        # Granting fails closed, in one line.
        with broker.client("alice") as http:
            refused = http.post("/api/v1/requests", json={"role": "shop-read", "duration": "5m"})
        assert refused.status_code == 503
        problem = refused.json()
        assert problem["code"] == "audit_broken"
        assert "\n" not in problem["detail"]
        assert "audit head" in problem["detail"]
        with broker.client("alice") as http:
            refused = http.post("/api/v1/db/credentials", json={"target": "orders-db"})
        assert (refused.status_code, refused.json()["code"]) == (503, "audit_broken")

        # Taking access back does not: an admin's revoke and the holder's own.
        with broker.client("auditor") as http:
            answer = http.post(f"/api/v1/grants/{shop['id']}/revoke", json={"comment": "INC-7"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "REVOKED"
        with broker.client("alice") as http:
            answer = http.post(f"/api/v1/grants/{spare['id']}/revoke", json={})
        assert answer.status_code == 200, answer.text

        poll("the MariaDB login to be dropped", lambda: not maria_login_exists())
        with pytest.raises(pymysql.MySQLError), maria_session.cursor() as cur:
            cur.execute("SELECT 1")

        # The short grant expires on time and its PostgreSQL login is dropped.
        ended = poll(
            "the PostgreSQL grant to expire",
            lambda: (
                (g := broker.call("alice", "GET", f"/api/v1/grants/{orders['id']}"))["state"] == "EXPIRED"
                and g
            ),
        )
        assert iso(ended["ended_at"]) - iso(ended["expires_at"]) < EXPIRY_LAG
        poll("the PostgreSQL login to be dropped", lambda: not pg_login_exists(pg_env, pg["user"]))
        with pytest.raises(psycopg.OperationalError):
            pg_session.execute("SELECT 1")

        # Loud: health, metrics and one log line.
        seen = health(broker)
        assert seen["status"] == "degraded"
        assert seen["audit"] == "broken"
        assert "audit head" in str(seen["audit_problem"])
        assert broker.metric("jitgate_audit_healthy") == 0
        poll("five parked records", lambda: broker.metric("jitgate_audit_parked_records") >= 5)
        assert broker.metric("jitgate_pending_revocations") == 0
        assert log_mentions(broker, "audit log broken") == [1]
    finally:
        pg_session.close()
        maria_session.close()

    # A broker that restarts while the log is broken still starts, and says so once.
    broker.kill()
    broker.start()
    assert health(broker)["status"] == "degraded"
    poll("the restarted broker's log line", lambda: log_mentions(broker, "audit log broken") == [1, 1])

    repaired = offline("audit", "repair", "--data-dir", str(broker.data), "--reason", "INC-7 head edited")
    assert repaired.returncode == 0, repaired.stderr
    assert "audit log repaired" in repaired.stdout
    poll("health to recover", lambda: health(broker)["status"] == "ok")
    assert broker.metric("jitgate_audit_healthy") == 1
    assert broker.metric("jitgate_audit_parked_records") == 0
    grant_for(broker, "shop-read", "5m")  # granting works again

    records = export_actions(broker)
    actions = [r["action"] for r in records]
    start = actions.index("audit.repaired")
    repair_record = records[start]
    assert repair_record["details"]["old_head"]["hash"] == "0" * 64  # type: ignore[index]
    assert repair_record["details"]["reason"] == "INC-7 head edited"  # type: ignore[index]
    after = actions[start + 1 :]
    assert after[0] == "audit.unparked"
    parked = after[1 : 1 + records[start + 1]["details"]["records"]]  # type: ignore[index]
    assert sorted(parked) == sorted(
        [
            "grant.revoked",
            "grant.revoked",
            "grant.expired",
            "credential.revoked",
            "credential.revoked",
            "policy.loaded",
        ]
    )
    expired = next(r for r in records if r["action"] == "grant.expired")
    assert expired["grant_id"] == orders["id"]
    broker.stop_all()
    verify = offline("audit", "verify", "--data-dir", str(broker.data))
    assert verify.returncode == 0, verify.stderr
