"""Why a reader may or may not review a request, and the role catalogue's words for one person."""

from __future__ import annotations

from jitgate.domain.identity import Identity
from jitgate.policy.catalogue import catalogue
from jitgate.policy.decision import ReviewStanding, get_role, review_standing
from jitgate.policy.loader import parse_policy
from support import ADMIN, ALICE, BOB, CAROL, ERIN, MALLORY, TEST_POLICY

POLICY = parse_policy(TEST_POLICY)
PROD = get_role(POLICY, "prod-shell")


def standing(
    who: Identity, *, requester: str = "alice", pending: bool = True, reviewers: tuple[str, ...] = ()
) -> ReviewStanding:
    return review_standing(who, PROD, requester=requester, pending=pending, reviewers=reviewers)


def test_an_approver_may_approve_and_is_told_which_subject_matched() -> None:
    found = standing(ERIN)
    assert (found.may_approve, found.may_deny) == (True, True)
    assert found.why == "you match group:sre-leads in role prod-shell's approvers"


def test_nobody_reviews_their_own_request_twice_or_after_the_decision() -> None:
    assert standing(BOB, requester="bob").why == "it is your own request; someone else must review it"
    assert standing(ERIN, reviewers=("erin",)).why == "you have already reviewed it"
    assert standing(ERIN, pending=False).why == "it is no longer waiting for review"
    for found in (
        standing(BOB, requester="bob"),
        standing(ERIN, reviewers=("erin",)),
        standing(ERIN, pending=False),
    ):
        assert not found.may_approve
        assert not found.may_deny


def test_an_admin_outside_the_approvers_may_deny_only() -> None:
    found = standing(ADMIN)
    assert (found.may_approve, found.may_deny) == (False, True)
    assert "only group:sre-leads may approve" in found.why


def test_anyone_else_may_do_nothing_and_a_removed_role_stops_everyone() -> None:
    assert not standing(MALLORY).may_deny
    assert "not among role prod-shell's approvers (group:sre-leads)" in standing(MALLORY).why
    gone = review_standing(ERIN, None, requester="alice", pending=True, reviewers=())
    assert (gone.may_approve, gone.may_deny, gone.why) == (
        False,
        False,
        "its role is no longer in the policy",
    )


def test_the_catalogue_lists_what_one_may_ask_for_or_approve_and_which_rules_apply() -> None:
    names = [e.name for e in catalogue(POLICY, ALICE)]
    assert names == ["prod-shell", "two-person", "stage-shell", "quick-fix", "vault-read"]
    assert [e.name for e in catalogue(POLICY, MALLORY)] == []
    assert len(catalogue(POLICY, ADMIN)) == len(POLICY.roles)
    (prod,) = [e for e in catalogue(POLICY, CAROL) if e.name == "prod-shell"]
    assert prod.auto_rules == [("approved automatically for members of oncall", True)]
    (prod,) = [e for e in catalogue(POLICY, ALICE) if e.name == "prod-shell"]
    assert prod.auto_rules == [("approved automatically for members of oncall", False)]
    assert prod.targets == [("web-1", "ssh"), ("web-2", "ssh")]
    assert prod.access == ["ssh as deploy"]
    assert prod.reason == "required, matching ^(INC|CHG)-[0-9]+"
    (quick,) = [e for e in catalogue(POLICY, ALICE) if e.name == "quick-fix"]
    assert quick.auto_rules == [("approved automatically for at most 15m", True)]
    (erin_prod,) = [e for e in catalogue(POLICY, ERIN) if e.name == "prod-shell"]
    assert (erin_prod.may_request, erin_prod.may_approve) == (False, True)
    assert erin_prod.approved_by_you == "you approve it as group:sre-leads"
