"""Step-up at elevation as a pure decision: a role's ``requires`` against how the caller signed in,
at an injected ``now``; and the ``requires`` block as the policy file spells it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jitgate.domain.identity import Identity
from jitgate.errors import PolicyFileError
from jitgate.policy.decision import explain
from jitgate.policy.loader import parse_policy
from jitgate.policy.model import Role
from jitgate.policy.step_up import sign_in_details, step_up_needed

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
MFA = "urn:example:mfa"
POLICY = """\
targets:
  - {name: web-1, kind: ssh, address: 10.0.0.5}
roles:
  - name: prod-root
    targets: {names: [web-1]}
    ssh: {logins: [root]}
    max_duration: 1h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
    requires: REQUIRES
"""


def role(requires: str) -> Role:
    found = parse_policy(POLICY.replace("REQUIRES", requires)).role("prod-root")
    assert found is not None
    return found


def person(ago: timedelta | None, acr: str | None = MFA) -> Identity:
    return Identity(
        "oidc:alice",
        frozenset({"engineers"}),
        source="oidc",
        auth_time=None if ago is None else NOW - ago,
        acr=acr,
        amr=("pwd", "otp"),
    )


FRESH_MFA = role(f"{{fresh_login: 5m, acr: ['{MFA}']}}")


def test_a_fresh_strong_sign_in_needs_nothing_more() -> None:
    assert step_up_needed(person(timedelta(minutes=4)), FRESH_MFA, "request", NOW) is None
    assert step_up_needed(person(timedelta(minutes=5)), FRESH_MFA, "approve", NOW) is None


def test_a_sign_in_older_than_fresh_login_asks_for_max_age() -> None:
    needed = step_up_needed(person(timedelta(minutes=5, seconds=1)), FRESH_MFA, "request", NOW)
    assert needed is not None
    assert needed.max_age == 300
    assert needed.acr_values == (MFA,)
    assert "sign in again" in needed.message


def test_a_weaker_sign_in_asks_for_the_acr_values() -> None:
    needed = step_up_needed(person(timedelta(seconds=1), acr="urn:example:pwd"), FRESH_MFA, "request", NOW)
    assert needed is not None
    assert "urn:example:pwd" in needed.message
    assert step_up_needed(person(timedelta(seconds=1), acr=None), FRESH_MFA, "request", NOW) is not None


def test_an_api_token_never_satisfies_a_requirement_and_is_told_to_use_sso() -> None:
    token = Identity("alice", frozenset({"engineers"}))
    needed = step_up_needed(token, FRESH_MFA, "request", NOW)
    assert needed is not None
    assert "sign in with SSO" in needed.message
    acr_only = role(f"{{acr: ['{MFA}']}}")
    only = step_up_needed(token, acr_only, "approve", NOW)
    assert only is not None
    assert only.max_age is None


def test_for_limits_the_requirement_to_its_steps() -> None:
    approving = role(f"{{acr: ['{MFA}'], for: [approve]}}")
    weak = person(timedelta(hours=3), acr="urn:example:pwd")
    assert step_up_needed(weak, approving, "request", NOW) is None
    assert step_up_needed(weak, approving, "approve", NOW) is not None


def test_a_role_without_requires_asks_nothing() -> None:
    plain = parse_policy(POLICY.replace("    requires: REQUIRES\n", "")).role("prod-root")
    assert plain is not None
    assert step_up_needed(Identity("bot"), plain, "request", NOW) is None


@pytest.mark.parametrize(
    ("requires", "says"),
    [
        ("{}", "fresh_login or acr"),
        ("{fresh_login: 5m, for: []}", "request, approve or both"),
        ("{fresh_login: 2d}", "between 1s and 24h"),
        ("{fresh_login: 300}", "not a duration"),
        ("{acr: ['with space']}", "pattern"),
        ("{acr: ['a\"b']}", "pattern"),
        ("{fresh_login: 5m, for: [revoke]}", "request"),
        ("{fresh_login: 5m, mfa: true}", "mfa"),
    ],
)
def test_a_bad_requires_is_refused_with_its_line(requires: str, says: str) -> None:
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(POLICY.replace("REQUIRES", requires), "policy.yaml")
    assert says in caught.value.message
    assert "policy.yaml:" in caught.value.message


def test_the_audit_records_how_an_oidc_actor_signed_in_and_nothing_for_a_token() -> None:
    assert sign_in_details(person(timedelta(minutes=1))) == {
        "sign_in": {"auth_time": (NOW - timedelta(minutes=1)).isoformat(), "acr": MFA, "amr": ["pwd", "otp"]}
    }
    assert sign_in_details(Identity("alice")) == {}


def test_explain_says_what_sign_in_a_role_demands() -> None:
    policy = parse_policy(POLICY.replace("REQUIRES", f"{{fresh_login: 5m, acr: ['{MFA}']}}"))
    lines = explain(policy, Identity("alice", frozenset({"engineers"})), "prod-root").lines
    assert (
        f"sign-in: requesting and approving need a sign-in at the identity provider within 5m, "
        f"of strength {MFA} (API tokens cannot prove one)"
    ) in lines


@pytest.mark.parametrize("approves_itself", ["approval: auto", "break_glass: true"])
def test_requires_for_approving_alone_is_refused_on_a_role_that_nobody_approves(approves_itself: str) -> None:
    # Its requests become grants with no review at all, so the fresh approver it names never comes:
    # the role would demand nothing while reading as if it demanded a step-up.
    text = POLICY.replace("REQUIRES", "{fresh_login: 5m, for: [approve]}") + f"    {approves_itself}\n"
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text, "policy.yaml")
    assert "nobody approves" in caught.value.message
    assert "policy.yaml:" in caught.value.message
    parse_policy(text.replace("for: [approve]", "for: [request, approve]"))  # the request side still holds
