"""Console page speed: time to first byte and full load of the review queue with 1,000 pending
requests and of the audit page over a long audit log, next to the API's audit list.

    .venv/bin/python bench/console.py                          # 1,000,000 audit records
    .venv/bin/python bench/console.py --audit-records 100000 --runs 30 --inbox /ui/inbox

The data directory is made the broker's way on SQLite: users by ``jitgate users add``, the
pending requests by the workflow's ``submit``, and the audit records by the audit log's own
``append_many`` in large batches (one head signature per batch), so the chain is a real one and
verifies. Then a real ``jitgate server`` serves it and one signed-in browser session per person
(httpx, keeping the session cookie) loads each page ``--runs`` times, one at a time: the time to
the response's first byte and to its last. The query plans of the audit page's statements are
printed too. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from common import JITGATE, free_port, percentiles, wait_healthy

from jitgate.audit.chain import Event
from jitgate.audit.query import query
from jitgate.audit.verify import verify
from jitgate.runtime import Runtime, build_runtime
from jitgate.settings import Settings
from jitgate.workflow import requests

POLICY = """
targets:
  - {name: web-1, kind: ssh, address: 127.0.0.1, labels: {env: prod}}
roles:
  - name: prod-shell
    targets: {labels: {env: prod}}
    ssh: {logins: [deploy]}
    max_duration: 4h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
    review_timeout: 30d
"""
PEOPLE = {"alice": ["--group=engineers"], "bob": ["--group=sre-leads"], "root": ["--admin"]}
ACTIONS = ("request.created", "review.approved", "grant.activated", "credential.issued", "grant.expired")
ROLES = ("prod-shell", "orders-read", "db-admin")
BATCH = 20_000


def add_people(data: Path) -> dict[str, str]:
    tokens = {}
    for name, flags in PEOPLE.items():
        done = subprocess.run(
            [*JITGATE, "users", "add", name, *flags, "--data-dir", str(data), "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        tokens[name] = json.loads(done.stdout)["token"]
    return tokens


def fill(data: Path, policy: Path, *, records: int, pending: int, tokens: dict[str, str]) -> None:
    """``records`` audit records (the oldest) and then ``pending`` requests for bob to review."""
    settings = Settings(data_dir=data, policy_file=policy, max_pending_requests_per_requester=1000)
    rt = build_runtime(settings)
    ctx = rt.ctx
    start = ctx.clock.now() - timedelta(milliseconds=records + 1)
    t0 = time.perf_counter()
    n = 0
    while n < records:
        events = []
        for i in range(n, min(n + BATCH, records)):
            events.append(
                Event.checked(
                    at=start + timedelta(milliseconds=i),
                    actor=f"user{i % 50}",
                    action=ACTIONS[i % len(ACTIONS)],
                    request_id=f"r-{i // 5:016x}",
                    grant_id=f"g-{i // 5:016x}" if i % 5 >= 2 else None,
                    role=ROLES[i % len(ROLES)],
                    target="web-1",
                    details={"reason": f"INC-{i // 5} disk full on web-1", "duration_s": 3600, "n": i},
                )
            )
        with ctx.db.write() as conn:
            ctx.audit.append_many(conn, events)
        n += len(events)
    built = time.perf_counter() - t0
    print(f"audit log: {records:,} records appended in {built:.1f} s ({records / max(built, 1e-9):,.0f}/s)")
    alice = rt.tokens.authenticate(tokens["alice"])
    t0 = time.perf_counter()
    for i in range(pending):
        requests.submit(ctx, alice, role="prod-shell", reason=f"INC-{i} disk full", duration="1h")
    print(f"requests:  {pending:,} pending, submitted in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    with ctx.db.read() as conn:
        verdict = verify(conn, ctx.audit.public_key)
    print(f"verify:    {verdict.count:,} records, {'intact' if verdict.ok else verdict.problem}, "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    explain(rt)
    ctx.db.dispose()


def explain(rt: Runtime) -> None:
    """The query plans SQLite picks for the statements the audit page runs."""
    cases: dict[str, dict[str, Any]] = {
        "first page": {},
        "actor": {"actor": "user7"},
        "action prefix": {"action": "grant."},
        "role+prefix": {"role": "db-admin", "action": "grant."},
        "grant": {"grant_id": "g-0000000000000010"},
        "since": {"since": datetime.now(UTC) - timedelta(hours=1)},
    }
    engine = rt.ctx.db.engine
    for name, filters in cases.items():
        statements: list[tuple[str, object]] = []

        def seen(*args: object) -> None:
            text, params = args[2], args[3]
            if isinstance(text, str) and "FROM audit_events" in text:
                statements.append((text, params))  # noqa: B023 - used before the next case

        sa.event.listen(engine, "before_cursor_execute", seen)
        with rt.ctx.db.read() as conn:
            query(conn, **filters, limit=201, newest_first=True)
        sa.event.remove(engine, "before_cursor_execute", seen)
        with rt.ctx.db.read() as conn:
            plans = {
                "; ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {text}", params))  # type: ignore[arg-type]
                for text, params in statements
            }
        print(f"plan {name:<14} {len(statements)} statements: {' | '.join(sorted(plans))}")


@contextmanager
def server(data: Path, policy: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    listen = ["--listen", f"127.0.0.1:{port}", "--no-access-log"]
    process = subprocess.Popen(
        [*JITGATE, "server", "--data-dir", str(data), "--policy", str(policy), *listen],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "JITGATE_MAX_PENDING_REQUESTS_PER_REQUESTER": "1000"},
    )
    try:
        wait_healthy(url, timeout=120)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def browser(url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=120)
    login = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', login.text)
    if csrf is None:
        raise RuntimeError("no sign-in form")
    signed = client.post("/ui/login", data={"token": token, "csrf": csrf.group(1)})
    if signed.status_code != 303 or "jitgate_session" not in client.cookies:
        raise RuntimeError(f"sign-in failed: {signed.status_code}")
    return client


def measure(
    client: httpx.Client, path: str, runs: int, rows: re.Pattern[str]
) -> tuple[list[float], list[float], int]:
    """(times to first byte, times to last byte, rows on the page) of ``runs`` loads of ``path``."""
    first: list[float] = []
    full: list[float] = []
    count = 0
    for _ in range(runs + 2):  # the first two warm the caches up and are not counted
        t0 = time.perf_counter()
        with client.stream("GET", path) as response:
            t1 = None
            body = b""
            for chunk in response.iter_bytes():
                t1 = t1 or time.perf_counter()
                body += chunk
            t2 = time.perf_counter()
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {body[:200]!r}")
        first.append((t1 or t2) - t0)
        full.append(t2 - t0)
        count = len(rows.findall(body.decode()))
    return first[2:], full[2:], count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--audit-records", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--inbox", default="/ui/inbox", help="the page listing the review queue")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jitgate-bench-") as tmp:
        data = Path(tmp) / "data"
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(POLICY)
        tokens = add_people(data)
        fill(data, policy, records=args.audit_records, pending=args.pending, tokens=tokens)
        size = sum(f.stat().st_size for f in data.glob("jitgate.db*"))
        print(f"database:  {size / 2**20:,.0f} MiB")
        with server(data, policy) as url:
            bob, root, alice = (browser(url, tokens[n]) for n in ("bob", "root", "alice"))
            with root.stream("GET", "/ui/audit") as response:
                response.read()
            deep = _head(root) // 2
            grant = f"g-{args.audit_records // 10:016x}"  # a grant in the middle of the log
            api = httpx.Client(
                base_url=url, timeout=120, headers={"Authorization": f"Bearer {tokens['root']}"}
            )
            audit_row = re.compile(r'<td class="when">')
            queue_row = re.compile(r'<td><a href="/ui/requests/')
            cases = [
                (f"review queue {args.inbox} (bob)", bob, args.inbox, queue_row),
                ("/ui/audit first page (admin)", root, "/ui/audit", audit_row),
                ("/ui/audit?actor=user7", root, "/ui/audit?actor=user7", audit_row),
                ("/ui/audit?action=grant.", root, "/ui/audit?action=grant.", audit_row),
                (
                    "/ui/audit?role=db-admin&action=grant.",
                    root,
                    "/ui/audit?role=db-admin&action=grant.",
                    audit_row,
                ),
                (f"/ui/audit?before={deep} (deep)", root, f"/ui/audit?before={deep}", audit_row),
                ("/ui/audit?since=(an hour ago)", root, f"/ui/audit?since={_hour_ago()}", audit_row),
                (f"/ui/audit?grant={grant}", root, f"/ui/audit?grant={grant}", audit_row),
                ("/ui/audit own records (alice)", alice, "/ui/audit", audit_row),
                ("GET /api/v1/audit?limit=200", api, "/api/v1/audit?limit=200", re.compile(r'"seq":')),
            ]
            print(f"\n{args.runs} loads each, one at a time; milliseconds")
            print(f"{'page':<46} {'rows':>5} {'TTFB p50':>9} {'p99':>7} {'full p50':>9} {'p99':>7}")
            for name, client, path, rows in cases:
                ttfb, full, count = measure(client, path, args.runs, rows)
                (f50, f99), (l50, l99) = percentiles(ttfb), percentiles(full)
                figures = f"{f50 * 1e3:>9.1f} {f99 * 1e3:>7.1f} {l50 * 1e3:>9.1f} {l99 * 1e3:>7.1f}"
                print(f"{name:<46} {count:>5} {figures}")
            for client in (bob, root, alice, api):
                client.close()


def _head(client: httpx.Client) -> int:
    found = re.search(r"<td>(\d+)</td><td class=\"when\">", client.get("/ui/audit").text)
    return int(found.group(1)) if found else 1


def _hour_ago() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%MZ")


if __name__ == "__main__":
    sys.exit(main())
