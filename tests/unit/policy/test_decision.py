"""Who may request, who may approve, what activates at once — and why, in words."""

from datetime import timedelta

import pytest

from jitgate.errors import InvalidInput, NotFound, PolicyDenied
from jitgate.policy.decision import (
    auto_approval,
    check_reason,
    check_requester,
    explain,
    get_role,
    resolve_targets,
    target_named,
)
from jitgate.policy.loader import parse_policy
from support import ALICE, CAROL, MALLORY, TEST_POLICY

POLICY = parse_policy(TEST_POLICY)


def test_requesters_are_matched_by_group_or_user() -> None:
    check_requester(ALICE, get_role(POLICY, "prod-shell"))
    with pytest.raises(PolicyDenied, match="mallory may not request role prod-shell"):
        check_requester(MALLORY, get_role(POLICY, "prod-shell"))


def test_unknown_role_is_not_found() -> None:
    with pytest.raises(NotFound, match="no role named 'nope'"):
        get_role(POLICY, "nope")


def test_a_mistyped_role_or_target_is_answered_with_the_nearest_name() -> None:
    with pytest.raises(NotFound, match=r"^no role named 'prod-shel' \(did you mean prod-shell\?\)$"):
        get_role(POLICY, "prod-shel")
    with pytest.raises(NotFound, match=r"^no target named 'web1' \(did you mean web-1\?\)$"):
        target_named(POLICY, "web1")
    with pytest.raises(NotFound, match=r"^no target named 'web-9' \(did you mean web-\d\?\)$"):
        resolve_targets(POLICY, get_role(POLICY, "prod-shell"), ("web-9",))
    with pytest.raises(NotFound, match=r"^no target named 'moon'$"):  # nothing near: no guess
        target_named(POLICY, "moon")


def test_reason_rules() -> None:
    role = get_role(POLICY, "prod-shell")
    check_reason(role, "INC-1234 disk full")
    with pytest.raises(InvalidInput, match="needs a reason"):
        check_reason(role, "   ")
    with pytest.raises(InvalidInput, match="must match"):
        check_reason(role, "because")


def test_targets_are_the_roles_or_a_subset_of_them() -> None:
    role = get_role(POLICY, "prod-shell")
    assert resolve_targets(POLICY, role, ()) == ("web-1", "web-2")
    assert resolve_targets(POLICY, role, ("web-2",)) == ("web-2",)
    with pytest.raises(PolicyDenied, match="does not reach target stage-1"):
        resolve_targets(POLICY, role, ("stage-1",))
    with pytest.raises(NotFound, match="no target named 'moon'"):
        resolve_targets(POLICY, role, ("moon",))


def test_auto_approval_rules() -> None:
    assert auto_approval(ALICE, get_role(POLICY, "stage-shell"), timedelta(minutes=5)) == "approval: auto"
    assert auto_approval(CAROL, get_role(POLICY, "prod-shell"), timedelta(hours=1)) == "auto_approve[0]"
    assert auto_approval(ALICE, get_role(POLICY, "prod-shell"), timedelta(hours=1)) is None
    quick = get_role(POLICY, "quick-fix")
    assert auto_approval(ALICE, quick, timedelta(minutes=15)) == "auto_approve[0]"
    assert auto_approval(ALICE, quick, timedelta(minutes=16)) is None


def test_explain_says_why_not_and_who_approves() -> None:
    result = explain(POLICY, MALLORY, "prod-shell")
    assert not result.may_request
    assert "mallory may not request prod-shell" in result.lines[0]
    assert any("group:sre-leads" in line for line in result.lines)
    assert explain(POLICY, ALICE, "prod-shell").may_request
