"""A CI job elevates its own existing MariaDB account through a real ``jitgate server`` and the real
MariaDB: ``jitgate request ROLE --wait`` exits 0 only once the role is granted at the server, so
the job's very next statement may use it; the account was never created or given a password by
the broker, and the job held no secret of jitgate's."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

from support import component_missing
from support.broker_process import JITGATE, serving
from support.ci_issuer import CiIssuer, ci_issuer

pytestmark = pytest.mark.mariadb

HOST, PORT = "127.0.0.1", 3306
ENV = "JG_TEST_MARIADB_WORKLOAD_DSN"
READS = (
    "GRANT SELECT (User, Host, is_role, default_role, Super_priv, Grant_priv) ON mysql.user TO {0}",
    "GRANT SELECT ON mysql.roles_mapping TO {0}",
    "GRANT SELECT ON mysql.db TO {0}",
    "GRANT SELECT ON mysql.tables_priv TO {0}",
    "GRANT SELECT ON mysql.procs_priv TO {0}",
)


def root(*statements: str, args: tuple[object, ...] | None = None) -> list[tuple[object, ...]]:
    conn = pymysql.connect(host=HOST, port=PORT, user="root", password="", autocommit=True)
    with conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement, args)
        return list(cur.fetchall())


@dataclass(frozen=True)
class Shop:
    """A database, an admin that may hand out one role, and the job's own existing account."""

    database: str
    admin: str
    password: str
    role: str
    account: str

    def granted(self) -> set[str]:
        rows = root(
            "SELECT Role FROM mysql.roles_mapping WHERE User = %s AND Host = '%%'", args=(self.account,)
        )
        return {str(row[0]) for row in rows}


@pytest.fixture(scope="module")
def shop() -> Iterator[Shop]:
    suffix = secrets.token_hex(4)
    made = Shop(
        f"jg_wl_{suffix}",
        f"jg_wladm_{suffix}",
        secrets.token_urlsafe(12),
        f"jg_wlrole_{suffix}",
        f"jg_ci_{suffix}",
    )
    try:
        root("SELECT 1")
    except pymysql.MySQLError as exc:
        component_missing(f"MariaDB at {HOST}:{PORT} ({type(exc).__name__})")
    try:
        root(
            f"CREATE DATABASE `{made.database}`",
            f"CREATE TABLE `{made.database}`.orders (id int)",
            f"CREATE ROLE `{made.role}`",
            f"GRANT SELECT ON `{made.database}`.orders TO `{made.role}`",
        )
        root("CREATE USER %s@'%%' IDENTIFIED BY %s", args=(made.admin, made.password))
        root(
            f"GRANT CONNECTION ADMIN ON *.* TO `{made.admin}`@'%'",
            *(s.format(f"`{made.admin}`@'%'") for s in READS),
        )
        root(f"GRANT `{made.role}` TO `{made.admin}`@'%' WITH ADMIN OPTION")
        root("CREATE USER %s@'%%' IDENTIFIED BY 'the-jobs-own'", args=(made.account,))
        yield made
    finally:
        root(f"DROP DATABASE IF EXISTS `{made.database}`", f"DROP ROLE IF EXISTS `{made.role}`")
        for user in (made.admin, made.account):
            root("DROP USER IF EXISTS %s@'%%'", args=(user,))


@pytest.fixture(scope="module")
def ci() -> Iterator[CiIssuer]:
    with ci_issuer() as running:
        yield running


def policy(shop: Shop, issuer: str) -> str:
    return f"""
targets:
  - {{name: shop-db, kind: mariadb, admin_dsn_env: {ENV}}}
roles:
  - name: read-orders
    targets: {{names: [shop-db]}}
    mariadb: {{roles: [{shop.role}], existing_login: {{"workload:orders-deploy": {shop.account}}}}}
    max_duration: 10m
    requesters: [user:workload:orders-deploy]
    approval: auto
workloads:
  - name: orders-deploy
    issuer: {issuer}
    audience: jitgate
    claims: {{repository: acme/orders, ref: refs/heads/main}}
"""


def test_wait_returns_once_the_jobs_own_account_holds_the_role(
    shop: Shop, ci: CiIssuer, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy(shop, ci.issuer))
    dsn = f"mysql://{shop.admin}:{shop.password}@{HOST}:{PORT}/"
    with serving(tmp_path / "data", policy_file, tmp_path / "server.log", {ENV: dsn}) as (url, _, _):
        assert shop.granted() == set()
        env = {
            **os.environ,
            "JITGATE_URL": url,
            "JITGATE_TOKEN": ci.sign(ci.github_job(environment=None)),
            "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        }
        done = subprocess.run(
            [*JITGATE, "request", "read-orders", "--reason", "nightly export", "--wait", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        held_when_it_returned = shop.granted()
    assert (done.returncode, done.stderr) == (0, "")
    grant = json.loads(done.stdout)["grant"]
    assert (grant["state"], grant["holder"], grant["elevations_pending"]) == (
        "ACTIVE",
        "workload:orders-deploy",
        0,
    )
    assert held_when_it_returned == {shop.role}
