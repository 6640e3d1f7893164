"""The workflow's promises, checked after every step of generated sequences of everything people and
the scheduler do: submit, review, cancel, extend, revoke, issue credentials, targets going away and
coming back, time passing and scheduler passes.

After every step: no grant is longer than its role's maximum, nobody approved their own request and
every approved grant has its role's number of distinct approvals, no credential was issued outside
an active grant that covers its target and holder, each credential is taken back at most once, and
the audit chain verifies. When a sequence ends, with the target up and time let run, every ended
grant's credentials are gone from the target, each taken back exactly once.

The normal run is sized to matter without slowing the suite; ``JITGATE_STATEFUL_EXAMPLES`` and
``JITGATE_STATEFUL_STEPS`` make it as long as wanted (``bench/workflow_state_machine.sh``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from jitgate.audit.chain import AuditLog
from jitgate.audit.keys import load_or_create_signing_key
from jitgate.audit.verify import verify
from jitgate.clock import FrozenClock
from jitgate.domain.identity import Identity
from jitgate.domain.model import Verdict
from jitgate.errors import JitgateError
from jitgate.policy.loader import parse_policy
from jitgate.providers.ssh.ca import CaStore
from jitgate.providers.ssh.provider import SshCertificateProvider
from jitgate.store.db import Database
from jitgate.store.migrate import upgrade
from jitgate.store.tables import audit_events, credentials, grants, requests, reviews, revocations
from jitgate.workflow import credentials as issuing
from jitgate.workflow import grants as grant_svc
from jitgate.workflow import requests as request_svc
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from jitgate.workflow.scheduler import run_lifecycle, run_revocations
from support import ADMIN, ALICE, BOB, CAROL, ERIN, MALLORY
from support.providers import SwitchableProvider

EXAMPLES = int(os.environ.get("JITGATE_STATEFUL_EXAMPLES", "50"))
STEPS = int(os.environ.get("JITGATE_STATEFUL_STEPS", "50"))

# Small on purpose: few roles and durations, so that generated steps meet often (two extensions
# of one grant pending at once, a credential asked for just after a revoke, ...).
STATEFUL_POLICY = """
targets:
  - {name: web-1, kind: ssh, address: 127.0.0.1}
  - {name: stage-1, kind: ssh, address: 127.0.0.3}
  - {name: vault-1, kind: fake}
roles:
  - name: prod
    targets: {names: [web-1, vault-1]}
    ssh: {logins: [deploy]}
    max_duration: 4h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
    reason: {required: true, pattern: '^INC-[0-9]+'}
    review_timeout: 2h
  - name: pair
    targets: {names: [vault-1]}
    max_duration: 1h
    requesters: [group:engineers]
    approvers: [group:sre-leads, user:admin]
    approvals_required: 2
  - name: quick
    targets: {names: [vault-1]}
    max_duration: 2h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
    auto_approve:
      - max_duration: 15m
  - name: stage
    targets: {names: [stage-1]}
    ssh: {logins: [deploy]}
    max_duration: 30m
    requesters: [group:engineers]
    approval: auto
  - name: glass
    targets: {names: [vault-1]}
    max_duration: 1h
    requesters: [group:oncall]
    approvers: [group:sre-leads]
    break_glass: true
"""
PEOPLE = (ALICE, BOB, ERIN, CAROL, MALLORY, ADMIN)
POLICY = parse_policy(STATEFUL_POLICY, "stateful-policy.yaml")
ROLES = ("prod", "prod", "prod", "pair", "quick", "stage", "glass")
MAX = {role.name: role.max_duration for role in POLICY.roles}
NEEDED = {role.name: role.approvals_required for role in POLICY.roles}
DURATIONS = ("15m", "30m", "1h", "1h", "2h", "3h", "5h")
EXTRA = ("15m", "30m", "1h", "1h", "3h")
PAUSES = (1, 5 * 60, 20 * 60, 3600, 3 * 3600)
REASONS = ("INC-1", "INC-1", "INC-2 still on it", "")  # mostly fine: refusals are cheap to find
TARGETS = ("web-1", "stage-1", "vault-1", "vault-1")
PUBLIC_KEY = (
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    .decode()
)
ENDS = ("grant.expired", "grant.revoked")

people = st.sampled_from(PEOPLE)
# Mostly the people whose steps meet (alice asks, bob approves), sometimes anyone.
requesters = st.sampled_from((ALICE, ALICE, BOB, CAROL, MALLORY))
reviewers = st.sampled_from((BOB, ERIN, ADMIN, ALICE))
pick = st.integers(min_value=0, max_value=10**6)
live = st.sampled_from((True, True, True, False))

_template: Path | None = None
_scratch = Path(tempfile.mkdtemp(prefix="jitgate-stateful-"))


def _fresh_database(into: Path) -> Path:
    """A migrated SQLite file, copied from one made once: migrating for every example is slow."""
    global _template  # noqa: PLW0603 - built lazily, once per test process
    if _template is None:
        _template = _scratch / "template.db"
        engine = sa.create_engine(f"sqlite:///{_template}")
        upgrade(engine)
        engine.dispose()
    target = into / "jitgate.db"
    shutil.copyfile(_template, target)
    return target


class Workflow(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(dir=_scratch))
        self.clock = FrozenClock(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
        self.db = Database(f"sqlite:///{_fresh_database(self.dir)}")
        self.audit = AuditLog(load_or_create_signing_key(self.dir / "audit.pem"))
        self.fake = SwitchableProvider()
        self.ctx = WorkflowContext(
            db=self.db, policies=PolicyHolder(POLICY), audit=self.audit, clock=self.clock
        )
        self.ctx.providers["fake"] = self.fake
        self.ctx.providers["ssh"] = SshCertificateProvider(CaStore(_scratch / "ca"), self.clock)
        self.request_ids: list[str] = []
        self.grant_ids: list[str] = []

    def teardown(self) -> None:
        self.db.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- what people do -------------------------------------------------------------------

    def _attempt(self, step: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a workflow step; a refusal is a fine outcome, anything but ``JitgateError`` is a bug."""
        try:
            return step(self.ctx, *args, **kwargs)
        except JitgateError:
            return None

    def _choose(self, ids: list[str], which: int, state: str | None, table: sa.Table) -> str:
        """One of ``ids``: when ``state`` is given and some are in it, one of those."""
        if state is not None:
            with self.db.read() as conn:
                found = set(conn.execute(sa.select(table.c.id).where(table.c.state == state)).scalars())
            current = [i for i in ids if i in found]
            if current:
                ids = current
        return ids[which % len(ids)]

    def _remember(self, view: Any) -> None:
        if view is None:
            return
        if view["id"] not in self.request_ids:
            self.request_ids.append(view["id"])
        grant = view.get("grant")
        if grant and grant["id"] not in self.grant_ids:
            self.grant_ids.append(grant["id"])

    @initialize(duration=st.sampled_from(("1h", "2h", "3h")), approve=st.booleans())
    def start_with_a_request(self, duration: str, approve: bool) -> None:
        view = self._attempt(request_svc.submit, ALICE, role="prod", reason="INC-1", duration=duration)
        self._remember(view)
        if approve:
            self._remember(self._attempt(request_svc.review, BOB, view["id"], verdict=Verdict.APPROVE))

    @rule(
        who=requesters,
        role=st.sampled_from(ROLES),
        duration=st.sampled_from(DURATIONS),
        reason=st.sampled_from(REASONS),
    )
    def submit(self, who: Identity, role: str, duration: str, reason: str) -> None:
        self._remember(self._attempt(request_svc.submit, who, role=role, reason=reason, duration=duration))

    @precondition(lambda self: self.request_ids)
    @rule(who=st.one_of(st.none(), reviewers), which=pick, pending=live, approve=st.booleans())
    def review(self, who: Identity | None, which: int, pending: bool, approve: bool) -> None:
        """An approver reviews a request; ``who=None`` is its own requester trying to."""
        request_id = self._choose(self.request_ids, which, "PENDING" if pending else None, requests)
        if who is None:
            with self.db.read() as conn:
                name = conn.execute(
                    sa.select(requests.c.requester).where(requests.c.id == request_id)
                ).scalar_one()
            who = next(p for p in PEOPLE if p.name == name)
        verdict = Verdict.APPROVE if approve else Verdict.DENY
        self._remember(self._attempt(request_svc.review, who, request_id, verdict=verdict, comment="ok"))

    @precondition(lambda self: self.request_ids)
    @rule(who=people, which=pick)
    def cancel(self, who: Identity, which: int) -> None:
        self._attempt(request_svc.cancel, who, self.request_ids[which % len(self.request_ids)])

    @precondition(lambda self: self.grant_ids)
    @rule(
        who=requesters,
        which=pick,
        active=live,
        duration=st.sampled_from(EXTRA),
        reason=st.sampled_from(REASONS),
    )
    def extend(self, who: Identity, which: int, active: bool, duration: str, reason: str) -> None:
        """The holder (or someone else) asks for more time, preferring a grant already waiting on one."""
        grant_id = self._choose(self.grant_ids, which, "ACTIVE" if active else None, grants)
        with self.db.read() as conn:
            waiting = list(
                conn.execute(
                    sa.select(requests.c.extends_grant_id).where(
                        requests.c.state == "PENDING", requests.c.extends_grant_id.is_not(None)
                    )
                ).scalars()
            )
        if waiting and active:
            grant_id = waiting[which % len(waiting)]
        self._remember(self._attempt(grant_svc.extend, who, grant_id, duration=duration, reason=reason))

    @precondition(lambda self: self.grant_ids)
    @rule(who=people, which=pick, active=live)
    def revoke(self, who: Identity, which: int, active: bool) -> None:
        grant_id = self._choose(self.grant_ids, which, "ACTIVE" if active else None, grants)
        self._attempt(grant_svc.revoke, who, grant_id)

    @rule(who=requesters, target_name=st.sampled_from(TARGETS))
    def issue(self, who: Identity, target_name: str) -> None:
        params = {} if target_name == "vault-1" else {"public_key": PUBLIC_KEY}
        self._attempt(issuing.issue, who, target_name, params=params)

    # --- what the world and the broker do ----------------------------------------------------

    @rule(
        happens=st.sampled_from(("time", "time", "scheduler", "scheduler", "target down", "target up")),
        seconds=st.sampled_from(PAUSES),
    )
    def world(self, happens: str, seconds: int) -> None:
        """Time passes, the scheduler makes a pass, or the fake target goes away or comes back."""
        if happens == "time":
            self.clock.advance(timedelta(seconds=seconds))
        elif happens == "scheduler":
            run_lifecycle(self.ctx)
            run_revocations(self.ctx)
        else:
            self.fake.up = happens == "target up"

    # --- what must hold after every step -------------------------------------------------------

    @invariant()
    def no_grant_is_longer_than_its_role_allows(self) -> None:
        with self.db.read() as conn:
            for g in conn.execute(sa.select(grants)).mappings():
                assert g.expires_at - g.starts_at <= MAX[g.role], f"grant {g.id} is too long"

    @invariant()
    def nobody_approves_their_own_request_and_approvals_are_counted_once(self) -> None:
        with self.db.read() as conn:
            own = conn.execute(
                sa.select(reviews.c.request_id)
                .join(requests, requests.c.id == reviews.c.request_id)
                .where(reviews.c.reviewer == requests.c.requester)
            ).all()
            assert own == [], f"self-review recorded: {own}"
            approved = conn.execute(
                sa.select(requests).where(
                    requests.c.kind == "access",
                    requests.c.auto_approved.is_(None),
                    requests.c.break_glass.is_(False),
                    requests.c.state.in_(("APPROVED", "ACTIVE", "EXPIRED", "REVOKED")),
                )
            ).mappings()
            for req in approved:
                voters = conn.execute(
                    sa.select(reviews.c.reviewer).where(
                        reviews.c.request_id == req.id, reviews.c.verdict == "approve"
                    )
                ).scalars()
                distinct = set(voters)
                assert req.requester not in distinct
                assert len(distinct) >= NEEDED[req.role], f"request {req.id} granted on {distinct}"

    @invariant()
    def credentials_come_only_from_active_covering_grants_and_go_back_at_most_once(self) -> None:
        with self.db.read() as conn:
            seqs: dict[tuple[str, str], list[int]] = {}
            for row in conn.execute(
                sa.select(audit_events.c.seq, audit_events.c.action, audit_events.c.grant_id).where(
                    audit_events.c.action.in_(
                        ("credential.issued", "grant.activated", "grant.started", *ENDS)
                    )
                )
            ):
                seqs.setdefault((row.grant_id, row.action), []).append(row.seq)
            grant_rows = {g.id: g for g in conn.execute(sa.select(grants)).mappings()}
            for cred in conn.execute(sa.select(credentials)).mappings():
                grant = grant_rows[cred.grant_id]
                assert cred.holder == grant.holder
                assert cred.target in grant.targets
                assert grant.starts_at <= cred.created_at < grant.expires_at
            for (grant_id, action), found in seqs.items():
                if action != "credential.issued":
                    continue
                began = seqs.get((grant_id, "grant.activated"), []) + seqs.get(
                    (grant_id, "grant.started"), []
                )
                ended = [s for end in ENDS for s in seqs.get((grant_id, end), [])]
                assert began, f"credential under grant {grant_id}, which never began"
                assert min(found) > min(began), f"credential before grant {grant_id} began"
                assert len(ended) <= 1, f"grant {grant_id} ended {len(ended)} times"
                if ended:
                    assert max(found) < ended[0], f"credential issued after grant {grant_id} ended"
            taken_back = Counter(
                conn.execute(
                    sa.select(revocations.c.credential_id).where(revocations.c.state == "done")
                ).scalars()
            )
            assert all(n == 1 for n in taken_back.values())
            revoked_records = Counter(
                (e.grant_id, e.body)
                for e in conn.execute(
                    sa.select(audit_events.c.grant_id, audit_events.c.body).where(
                        audit_events.c.action == "credential.revoked"
                    )
                )
            )
            assert all(n == 1 for n in revoked_records.values()), "a credential was taken back twice"

    @invariant()
    def the_audit_chain_verifies(self) -> None:
        with self.db.read() as conn:
            result = verify(conn, self.audit.public_key)
        assert result.ok, result.problem

    def check_every_ended_grant_is_taken_back(self) -> None:
        """With the target up and time let run, nothing of an ended grant is left at the target."""
        self.fake.up = True
        for _ in range(3):
            self.clock.advance(timedelta(days=1))
            run_lifecycle(self.ctx)
            run_revocations(self.ctx)
        with self.db.read() as conn:
            pending = conn.execute(
                sa.select(sa.func.count()).where(revocations.c.state == "pending")
            ).scalar_one()
            handles = {
                row.handle: row.state
                for row in conn.execute(
                    sa.select(credentials.c.handle, grants.c.state)
                    .join(grants, grants.c.id == credentials.c.grant_id)
                    .where(credentials.c.kind == "fake")
                )
            }
            revoked = Counter(
                row.handle
                for row in conn.execute(sa.select(revocations.c.handle).where(revocations.c.state == "done"))
            )
        assert pending == 0
        assert all(state in {"EXPIRED", "REVOKED"} for state in handles.values())
        assert not (self.fake.logins & set(handles)), "a login outlived its grant"
        assert all(revoked[handle] == 1 for handle in handles), "a login was not taken back exactly once"


class DrainedWorkflow(Workflow):
    def teardown(self) -> None:
        try:
            self.check_every_ended_grant_is_taken_back()
        finally:
            super().teardown()


DrainedWorkflow.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_the_workflow_keeps_its_promises_whatever_happens = DrainedWorkflow.TestCase
