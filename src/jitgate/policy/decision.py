"""Policy decisions: may this identity request that role, who may approve it, is it auto-approved.

Pure functions over the policy model and an identity; each refusal says why in one line, and
``explain`` lays the whole reasoning out for ``jitgate policy explain``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from jitgate.domain.durations import format_duration
from jitgate.domain.identity import Identity
from jitgate.errors import InvalidInput, NotFound, PolicyDenied
from jitgate.policy.elevation import account_line, elevations_of
from jitgate.policy.model import Policy, Role, Target


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the one of ``names`` closest to a mistyped ``name``, else nothing."""
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def get_role(policy: Policy, name: str) -> Role:
    role = policy.role(name)
    if role is None:
        raise NotFound(f"no role named {name!r}{did_you_mean(name, (r.name for r in policy.roles))}")
    return role


def target_named(policy: Policy, name: str) -> Target:
    """The policy's target ``name``; a mistyped one is refused with the nearest name."""
    target = policy.target(name)
    if target is None:
        raise NotFound(f"no target named {name!r}{did_you_mean(name, (t.name for t in policy.targets))}")
    return target


def may_request(identity: Identity, role: Role) -> bool:
    return identity.matches(role.requesters)


def may_approve(identity: Identity, role: Role) -> bool:
    return identity.matches(role.approvers)


def approver_subjects(identity: Identity, role: Role) -> list[str]:
    """The entries of ``role``'s approvers that ``identity`` matches: why they may approve it."""
    return sorted(identity.principals.intersection(role.approvers))


@dataclass(frozen=True)
class ReviewStanding:
    """What ``identity`` may do with a request under review, and why, in one line for people."""

    may_approve: bool
    may_deny: bool
    why: str


def review_standing(
    identity: Identity,
    role: Role | None,
    *,
    requester: str,
    pending: bool,
    reviewers: Iterable[str],
) -> ReviewStanding:
    """Whether ``identity`` may approve or deny a request, by the rules ``decide_review`` applies
    (the review itself still decides): only while pending, never one's own, once per reviewer, an
    approver of the role; admins may deny any request but approve only where the policy names them.
    """

    refusal = None
    if role is None:
        refusal = "its role is no longer in the policy"
    elif not pending:
        refusal = "it is no longer waiting for review"
    elif identity.name == requester:
        refusal = "it is your own request; someone else must review it"
    elif identity.name in set(reviewers):
        refusal = "you have already reviewed it"
    if role is None or refusal is not None:
        return ReviewStanding(may_approve=False, may_deny=False, why=refusal or "")
    matched = approver_subjects(identity, role)
    if matched:
        why = f"you match {', '.join(matched)} in role {role.name}'s approvers"
        return ReviewStanding(may_approve=True, may_deny=True, why=why)
    if identity.admin:
        why = f"you are an admin: you may deny it, but only {', '.join(role.approvers)} may approve"
        return ReviewStanding(may_approve=False, may_deny=True, why=why)
    why = f"you are not among role {role.name}'s approvers ({', '.join(role.approvers)})"
    return ReviewStanding(may_approve=False, may_deny=False, why=why)


def may_see(identity: Identity, owner: str, role: Role | None) -> bool:
    """Whether ``identity`` may know that a request or grant of ``owner`` for ``role`` exists:
    its owner, an admin, or an approver of the role. Everyone else is told it does not exist."""
    return identity.name == owner or identity.admin or (role is not None and may_approve(identity, role))


def check_requester(identity: Identity, role: Role) -> None:
    if not may_request(identity, role):
        raise PolicyDenied(
            f"{identity.name} may not request role {role.name} (requesters: {', '.join(role.requesters)})"
        )


def check_reason(role: Role, reason: str) -> None:
    text = reason.strip()
    if role.reason.required and not text:
        raise InvalidInput(f"role {role.name} needs a reason")
    if role.reason.pattern and (text or role.reason.required) and not re.search(role.reason.pattern, text):
        raise InvalidInput(f"reason for role {role.name} must match {role.reason.pattern!r}")
    if len(reason) > 2000:
        raise InvalidInput("reason is longer than 2000 characters")


def resolve_targets(policy: Policy, role: Role, asked: tuple[str, ...]) -> tuple[str, ...]:
    """The targets a request covers: all of the role's, or the asked subset of them."""
    reachable = tuple(t.name for t in policy.targets_of(role))
    if not asked:
        return reachable
    for name in asked:
        if policy.target(name) is None:
            raise NotFound(f"no target named {name!r}{did_you_mean(name, reachable)}")
        if name not in reachable:
            raise PolicyDenied(f"role {role.name} does not reach target {name}")
    return tuple(dict.fromkeys(asked))


def auto_approval(identity: Identity, role: Role, duration: timedelta) -> str | None:
    """Which rule lets this request activate without reviewers; ``None`` when people must decide."""
    if role.approval == "auto":
        return "approval: auto"
    for index, rule in enumerate(role.auto_approve):
        groups_ok = not rule.requester_groups or not identity.groups.isdisjoint(rule.requester_groups)
        duration_ok = rule.max_duration is None or duration <= rule.max_duration
        if groups_ok and duration_ok:
            return f"auto_approve[{index}]"
    return None


@dataclass
class Explanation:
    user: str
    role: str
    may_request: bool
    lines: list[str] = field(default_factory=list)
    approvers: list[str] = field(default_factory=list)


def explain(policy: Policy, identity: Identity, role_name: str) -> Explanation:
    role = get_role(policy, role_name)
    allowed = may_request(identity, role)
    out = Explanation(user=identity.name, role=role.name, may_request=allowed)
    matched = sorted(identity.principals.intersection(role.requesters))
    if allowed:
        out.lines.append(f"{identity.name} may request {role.name}: matches {', '.join(matched)}")
    else:
        out.lines.append(
            f"{identity.name} may not request {role.name}: none of {', '.join(sorted(identity.principals))} "
            f"is in requesters ({', '.join(role.requesters)})"
        )
    reached = policy.targets_of(role)
    out.lines.append(f"targets: {', '.join(t.name for t in reached)}")
    out.lines.extend(account_line(found, identity.name) for found in elevations_of(role, reached))
    out.lines.append(
        f"duration: {format_duration(role.min_duration)} to {format_duration(role.max_duration)}, "
        f"default {format_duration(role.duration_default)}"
    )
    if role.reason.required:
        pattern = f" matching {role.reason.pattern!r}" if role.reason.pattern else ""
        out.lines.append(f"reason: required{pattern}")
    if role.break_glass:
        out.lines.append("break-glass: activates at once, flagged, approvers are notified")
    if role.requires is not None:
        need = role.requires
        wants = []
        if need.fresh_login is not None:
            wants.append(f"within {format_duration(need.fresh_login)}")
        if need.acr:
            wants.append(f"of strength {' or '.join(need.acr)}")
        steps = " and ".join("requesting" if s == "request" else "approving" for s in need.steps)
        verb = "need" if len(need.steps) > 1 else "needs"
        out.lines.append(
            f"sign-in: {steps} {verb} a sign-in at the identity provider {', '.join(wants)} "
            "(API tokens cannot prove one)"
        )
    rule = auto_approval(identity, role, role.duration_default)
    if role.approval == "auto":
        out.lines.append("approval: automatic for every requester")
    elif rule:
        out.lines.append(f"approval: automatic for {identity.name} at the default duration ({rule})")
    else:
        out.lines.append(
            f"approval: {role.approvals_required} of {', '.join(role.approvers)}; never the requester"
        )
    out.approvers = list(role.approvers)
    return out
