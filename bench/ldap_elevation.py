"""Directory elevations granted and taken back per second on a real slapd: through the broker vs the
bare LDAP modifies.

    .venv/bin/python bench/ldap_elevation.py                  # 500 grants, 4 workers
    .venv/bin/python bench/ldap_elevation.py --count 1000 --workers 1

A throwaway slapd (``tests/support/slapd.py``: mdb backend, its own configuration and port) holds
``count`` people and one groupOfNames. Four ways of putting each person into the group and taking
them out again, run in turn in the same run (``rounds`` times, the best of each printed), each
with ``workers`` threads and so at most ``workers`` LDAP connections, bound as the same service
account:

* floor: python-ldap alone, one connection per thread: ``MOD_ADD member`` for each person, then
  ``MOD_DELETE member``;
* provider: ``LdapProvider`` alone, as the broker calls it: ``find_account``, ``held`` and
  ``elevate`` per grant, then ``withdraw``;
* broker: the whole workflow, broker database on SQLite in a temp dir: ``count`` auto-approved
  grants submitted (not timed), then ``run_revocations`` until every elevation is applied (timed:
  granted per second), then the clock moved past their expiry, ``expire_due`` and
  ``run_revocations`` until every membership is withdrawn (timed: revoked per second); the time
  spent inside the provider's calls is printed beside it;
* the same workflow with a provider that does nothing: the broker's own cost (database, audit
  log, queue), a ceiling no directory can lift.

Reading them: an elevation costs the provider three round trips (search for the entry, compare
for ``held``, modify) and a withdrawal one modify (plus a search for what the group is, at most
once a minute), so "provider calls alone" sits near the floor when the directory's write is what
costs (an fsync on a busy disk) and lower when a modify takes a few hundred microseconds. The
broker's own work per grant (its transactions and audit records) is what the last line measures;
when it costs more than the directory's modify, it is the limit of "through the broker".

Each figure over the floor is the ratio printed. Figures are printed, never asserted; membership
is checked by a search after each phase.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import ldap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from jitgate.audit.chain import AuditLog
from jitgate.audit.keys import load_or_create_signing_key
from jitgate.clock import FrozenClock
from jitgate.domain.identity import Identity
from jitgate.policy.loader import parse_policy
from jitgate.policy.model import Target
from jitgate.providers.base import ProviderContext
from jitgate.providers.ldap import LdapProvider, create_provider
from jitgate.store.db import Database
from jitgate.store.migrate import upgrade
from jitgate.workflow import requests
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from jitgate.workflow.scheduler import expire_due, run_revocations
from support.slapd import PASSWORD_ENV, SERVICE_DN, Slapd, Tree, new_tree, remove, start_slapd, target_yaml

ROLE = """roles:
  - name: bench
    targets: {{names: [corp]}}
    ldap: {{groups: ["{group}"]}}
    max_duration: 4h
    requesters: [group:bench]
    approval: auto
"""


LABELS = (
    "floor (python-ldap modify)",
    "provider calls alone",
    "through the broker",
    "broker, provider doing nothing",
)
T = TypeVar("T")


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def in_threads(workers: int, count: int, step: Callable[[int], None]) -> float:
    """Run ``step(n)`` for every n on ``workers`` threads; the wall-clock seconds it took."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(step, n) for n in range(count)]:
            future.result()
    return time.perf_counter() - start


def members(slapd: Slapd, group: str) -> int:
    return len(slapd.values(group, "member")) - 1  # less the root DN that keeps it a groupOfNames


def add_people(slapd: Slapd, tree: Tree, count: int) -> list[str]:
    conn = slapd.root()
    dns = []
    for n in range(count):
        uid = f"user{n}"
        dn = tree.person_dn(uid)
        attributes = {"objectClass": "inetOrgPerson", "uid": uid, "cn": uid, "sn": uid}
        conn.add_s(dn, [(name, [value.encode()]) for name, value in attributes.items()])
        dns.append(dn)
    conn.unbind_s()
    return dns


@dataclass(frozen=True)
class Setup:
    slapd: Slapd
    group: str
    people: list[str]
    workers: int
    policy: str
    provider: LdapProvider

    @property
    def target(self) -> Target:
        found = parse_policy(self.policy).target("corp")
        assert found is not None
        return found


def floor(setup: Setup) -> tuple[float, float]:
    slapd, group, people, workers = setup.slapd, setup.group, setup.people, setup.workers
    local = threading.local()

    def connection() -> ldap.ldapobject.LDAPObject:
        if not hasattr(local, "conn"):
            local.conn = ldap.initialize(slapd.url)
            local.conn.simple_bind_s(SERVICE_DN, slapd.service_password)
        return local.conn

    def add(n: int) -> None:
        connection().modify_s(group, [(ldap.MOD_ADD, "member", [people[n].encode()])])

    def delete(n: int) -> None:
        connection().modify_s(group, [(ldap.MOD_DELETE, "member", [people[n].encode()])])

    # One pool of threads for both phases, so each thread keeps its connection (opened outside the timing).
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda _n: connection(), range(workers * 4)))
        start = time.perf_counter()
        list(pool.map(add, range(len(people))))
        granted = time.perf_counter() - start
        assert members(slapd, group) == len(people)
        start = time.perf_counter()
        list(pool.map(delete, range(len(people))))
        revoked = time.perf_counter() - start
    assert members(slapd, group) == 0
    return rate(len(people), granted), rate(len(people), revoked)


def provider_alone(setup: Setup) -> tuple[float, float]:
    provider, target, slapd, group, people = (
        setup.provider,
        setup.target,
        setup.slapd,
        setup.group,
        setup.people,
    )
    provider.find_account(target, "user0")  # open a connection outside the timing

    def grant(n: int) -> None:
        account = provider.find_account(target, f"user{n}")
        assert account is not None
        if not provider.held(target, account, (group,)):
            provider.elevate(target, account, (group,))

    granted = in_threads(setup.workers, len(people), grant)
    assert members(slapd, group) == len(people)
    revoked = in_threads(setup.workers, len(people), lambda n: provider.withdraw(target, people[n], (group,)))
    assert members(slapd, group) == 0
    return rate(len(people), granted), rate(len(people), revoked)


class Stopwatch:
    """The provider, with the seconds spent in its elevation calls added up (any thread)."""

    def __init__(self, provider: LdapProvider) -> None:
        self.provider = provider
        self.kind = provider.kind
        self.revocable = provider.revocable
        self.seconds = 0.0
        self._lock = threading.Lock()

    def _timed(self, call: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return call()
        finally:
            with self._lock:
                self.seconds += time.perf_counter() - start

    def find_account(self, target: Target, account: str) -> str | None:
        return self._timed(lambda: self.provider.find_account(target, account))

    def held(self, target: Target, account: str, items: tuple[str, ...]) -> frozenset[str]:
        return self._timed(lambda: self.provider.held(target, account, items))

    def elevate(self, target: Target, account: str, items: tuple[str, ...]) -> Mapping[str, Any]:
        return self._timed(lambda: self.provider.elevate(target, account, items))

    def withdraw(self, target: Target, account: str, items: tuple[str, ...]) -> Mapping[str, Any]:
        return self._timed(lambda: self.provider.withdraw(target, account, items))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.provider, name)


class Nothing:
    """An elevation provider that does nothing: what the broker's own work costs (its database,
    the audit log, the queue), the ceiling any directory could reach through it."""

    kind = "ldap"
    revocable = True

    def find_account(self, target: Target, account: str) -> str | None:
        return f"uid={account}"

    def held(self, target: Target, account: str, items: tuple[str, ...]) -> frozenset[str]:
        return frozenset()

    def elevate(self, target: Target, account: str, items: tuple[str, ...]) -> Mapping[str, Any]:
        return {}

    def withdraw(self, target: Target, account: str, items: tuple[str, ...]) -> Mapping[str, Any]:
        return {}

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def through_broker(setup: Setup, tmp: Path, *, nothing: bool = False) -> tuple[float, float]:
    """Also prints how much of each phase's thread time was spent in the provider's calls."""
    count = len(setup.people)
    tmp.mkdir()
    db = Database(f"sqlite:///{tmp / 'jitgate.db'}")
    upgrade(db.engine)
    clock = FrozenClock(datetime.now(UTC))
    watched = Stopwatch(Nothing() if nothing else setup.provider)  # type: ignore[arg-type]
    ctx = WorkflowContext(
        db=db,
        policies=PolicyHolder(parse_policy(setup.policy)),
        audit=AuditLog(load_or_create_signing_key(tmp / "keys" / "audit.pem")),
        clock=clock,
        providers={"ldap": watched},  # type: ignore[dict-item]
    )
    for n in range(count):
        view = requests.submit(ctx, Identity(f"user{n}", frozenset({"bench"})), role="bench", duration="30m")
        assert view["state"] == "ACTIVE"

    def drain() -> int:
        total = 0
        while True:
            done, failed = run_revocations(ctx, limit=50, workers=setup.workers)
            if failed:
                raise RuntimeError(f"{failed} elevations failed")
            if not done:
                return total
            total += done

    watched.seconds = 0.0
    start = time.perf_counter()
    applied = drain()
    granted = time.perf_counter() - start
    in_provider = watched.seconds
    watched.seconds = 0.0
    assert applied == count
    assert nothing or members(setup.slapd, setup.group) == count
    clock.advance(timedelta(minutes=31))
    start = time.perf_counter()
    expired = 0
    while ended := expire_due(ctx):
        expired += ended
    withdrawn = drain()
    revoked = time.perf_counter() - start
    assert expired == withdrawn == count, (expired, withdrawn)
    assert members(setup.slapd, setup.group) == 0
    db.dispose()
    if nothing:
        return rate(count, granted), rate(count, revoked)
    print(
        f"    broker: {granted:.2f}s granting, {in_provider:.2f}s of it (summed over threads) in the "
        f"provider; {revoked:.2f}s revoking, {watched.seconds:.2f}s"
    )
    return rate(count, granted), rate(count, revoked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4, help="threads, and so LDAP connections (1-32)")
    parser.add_argument("--rounds", type=int, default=3, help="each way is run this often, alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jitgate-bench-ldap-") as tmp_name:
        tmp = Path(tmp_name)
        slapd = start_slapd(tmp / "slapd")
        try:
            tree = new_tree(slapd, "bench")
            people = add_people(slapd, tree, args.count)
            group = tree.add_group("bench")
            policy = "targets:\n" + target_yaml(slapd, tree, options=f"{{connections: {args.workers}}}")
            environ = {PASSWORD_ENV: slapd.service_password}
            clock = FrozenClock(datetime.now(UTC))
            provider = create_provider(ProviderContext(data_dir=tmp, environ=environ, clock=clock))
            setup = Setup(slapd, group, people, args.workers, policy + ROLE.format(group=group), provider)
            print(
                f"{args.count} elevations into one groupOfNames, {args.workers} worker(s) and connection(s)"
            )
            results: dict[str, list[tuple[float, float]]] = {label: [] for label in LABELS}
            for round_ in range(args.rounds):
                results[LABELS[0]].append(floor(setup))
                results[LABELS[1]].append(provider_alone(setup))
                results[LABELS[2]].append(through_broker(setup, tmp / f"broker-{round_}"))
                results[LABELS[3]].append(through_broker(setup, tmp / f"nothing-{round_}", nothing=True))
                figures = ", ".join(
                    f"{label.split()[0]} {g:.0f}/{r:.0f}" for label, [*_, (g, r)] in results.items()
                )
                print(f"    round {round_ + 1}: {figures} (granted/revoked per second)")
            provider.close()
        finally:
            remove(slapd)
    best = {label: (max(g for g, _ in runs), max(r for _, r in runs)) for label, runs in results.items()}
    base_granted, base_revoked = best[LABELS[0]]
    print(f"  best of {args.rounds} round(s)          granted/s  revoked/s")
    for label, (granted, revoked) in best.items():
        ratio = f"   {granted / base_granted:4.0%} / {revoked / base_revoked:4.0%} of the floor"
        print(f"  {label:<28} {granted:10.1f} {revoked:10.1f}{ratio}")


if __name__ == "__main__":
    main()
