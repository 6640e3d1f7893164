"""Roads around a role's ``requires`` tried by an insider with only an API token (no sign-in at the
provider) or with a sign-in too old: roles that approve themselves (``approval: auto``, an
``auto_approve`` rule, break-glass), a window that starts later, extending a grant. Each road must
end in ``StepUpRequired`` with nothing written; a fresh, strong sign-in still gets through."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from jitgate.clock import FrozenClock
from jitgate.domain.identity import Identity
from jitgate.errors import StepUpRequired
from jitgate.runtime import Runtime, build_runtime
from jitgate.settings import Settings
from jitgate.store.tables import requests as requests_table
from jitgate.workflow import grants, requests
from support import TEST_POLICY

MFA = "urn:example:mfa"
REQUIRES = f"    requires: {{fresh_login: 5m, acr: ['{MFA}']}}\n"


def with_requires(policy: str, *roles: str) -> str:
    """``policy`` with the step-up requirement added to each of ``roles``."""
    for role in roles:
        head = f"  - name: {role}\n"
        start = policy.index(head) + len(head)
        policy = policy[:start] + REQUIRES + policy[start:]
    return policy


@pytest.fixture
def runtime(tmp_path: Path, clock: FrozenClock) -> Iterator[Runtime]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(with_requires(TEST_POLICY, "stage-shell", "quick-fix", "breakglass"))
    rt = build_runtime(Settings(data_dir=tmp_path / "data", policy_file=policy), clock=clock)
    yield rt
    rt.ctx.db.dispose()


def person(clock: FrozenClock, signed_in_ago: timedelta | None) -> Identity:
    auth_time = None if signed_in_ago is None else clock.now() - signed_in_ago
    acr = None if auth_time is None else MFA
    return Identity("alice", frozenset({"engineers", "oncall"}), auth_time=auth_time, acr=acr)


def written(runtime: Runtime) -> int:
    with runtime.ctx.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(requests_table)).scalar_one())


ROADS = {
    "approval auto": {"role": "stage-shell", "duration": "10m"},
    "an auto_approve rule": {"role": "quick-fix", "duration": "10m"},
    "break-glass": {"role": "breakglass", "reason": "INC-1"},
    "approval auto, starting later": {"role": "stage-shell", "duration": "10m"},
}


@pytest.mark.parametrize("road", list(ROADS))
@pytest.mark.parametrize("signed_in_ago", [None, timedelta(minutes=6)], ids=["api-token", "stale-sign-in"])
def test_a_role_that_approves_itself_still_demands_the_step_up_at_submit(
    runtime: Runtime, clock: FrozenClock, road: str, signed_in_ago: timedelta | None
) -> None:
    start_at = clock.now() + timedelta(hours=1) if "later" in road else None
    with pytest.raises(StepUpRequired):
        requests.submit(runtime.ctx, person(clock, signed_in_ago), start_at=start_at, **ROADS[road])
    assert written(runtime) == 0


@pytest.mark.parametrize("road", list(ROADS))
def test_a_fresh_strong_sign_in_takes_every_road(runtime: Runtime, clock: FrozenClock, road: str) -> None:
    start_at = clock.now() + timedelta(hours=1) if "later" in road else None
    made = requests.submit(runtime.ctx, person(clock, timedelta(minutes=1)), start_at=start_at, **ROADS[road])
    assert made["state"] in {"ACTIVE", "APPROVED"}


def test_extending_an_auto_approved_grant_demands_the_step_up_again(
    runtime: Runtime, clock: FrozenClock
) -> None:
    made = requests.submit(
        runtime.ctx, person(clock, timedelta(minutes=1)), role="stage-shell", duration="5m"
    )
    clock.advance(timedelta(minutes=4))
    with pytest.raises(StepUpRequired):
        grants.extend(runtime.ctx, person(clock, None), made["grant"]["id"], duration="5m")
    with pytest.raises(StepUpRequired):
        grants.extend(runtime.ctx, person(clock, timedelta(minutes=6)), made["grant"]["id"], duration="5m")
