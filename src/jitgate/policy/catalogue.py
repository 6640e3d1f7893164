"""The role catalogue: what the policy lets a person ask for and approve, in words for that person.

Pure functions over the policy model and an identity, for the console's role list: each role's
targets and what it opens there (logins, database roles, directory groups; for a role that
elevates an existing account, which account this person's is on each target), its durations, who
approves and how many must, which auto-approval rules would apply to this person, and what a
reason must say.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jitgate.domain.durations import format_duration
from jitgate.domain.identity import Identity
from jitgate.policy.decision import approver_subjects, may_approve, may_request
from jitgate.policy.elevation import account_line, elevations_of
from jitgate.policy.model import AutoApproveRule, Policy, Role


@dataclass(frozen=True)
class RoleEntry:
    """One role as the catalogue shows it to one person."""

    name: str
    description: str
    may_request: bool
    may_approve: bool
    targets: list[tuple[str, str]]
    """(name, kind) of every target the role reaches."""
    access: list[str]
    """What the role opens on its targets: ssh logins, database roles and privileges, groups."""
    durations: str
    approval: str
    auto_rules: list[tuple[str, bool]] = field(default_factory=list)
    """Each auto-approval rule in words, and whether it could apply to this person."""
    reason: str = ""
    approved_by_you: str = ""
    break_glass: bool = False
    accounts: list[str] = field(default_factory=list)
    """One line per target where the role elevates an existing account: this person's account there."""


def catalogue(policy: Policy, identity: Identity) -> list[RoleEntry]:
    """Every role ``identity`` may request or approve (admins: every role), in policy order."""
    return [
        describe_role(policy, identity, role)
        for role in policy.roles
        if identity.admin or may_request(identity, role) or may_approve(identity, role)
    ]


def describe_role(policy: Policy, identity: Identity, role: Role) -> RoleEntry:
    matched = approver_subjects(identity, role)
    reached = policy.targets_of(role)
    return RoleEntry(
        name=role.name,
        description=role.description,
        may_request=may_request(identity, role),
        may_approve=bool(matched),
        targets=[(t.name, t.kind) for t in reached],
        access=_access(role),
        durations=(
            f"default {format_duration(role.duration_default)}, from {format_duration(role.min_duration)} "
            f"up to {format_duration(role.max_duration)}"
        ),
        approval=_approval(role),
        auto_rules=[(_rule_text(rule), _rule_may_apply(identity, rule)) for rule in role.auto_approve],
        reason=_reason(role),
        approved_by_you=f"you approve it as {', '.join(matched)}" if matched else "",
        break_glass=role.break_glass,
        accounts=[account_line(found, identity.name) for found in elevations_of(role, reached)],
    )


def _access(role: Role) -> list[str]:
    out = []
    if role.ssh is not None:
        out.append(f"ssh as {', '.join(role.ssh.logins)}")
        if role.ssh.port_forwarding:
            out.append("ssh port forwarding")
    if role.postgres is not None:
        own = role.postgres.existing_login is not None
        login = "your existing postgres login" if own else "postgres login"
        out.append(f"{login} in {', '.join(role.postgres.member_of)}")
    if role.mariadb is not None:
        granted = [*role.mariadb.roles, *role.mariadb.privileges]
        own = role.mariadb.existing_login is not None
        login = "your existing mariadb account" if own else "mariadb login"
        out.append(f"{login} with {', '.join(granted)}")
    if role.ldap is not None:
        out.append(f"your directory entry in {', '.join(role.ldap.groups)}")
    return out


def _approval(role: Role) -> str:
    if role.break_glass:
        return f"break-glass: active at once, flagged, and {', '.join(role.approvers)} are told"
    if role.approval == "auto":
        return "approved automatically for every requester"
    count = "one approval" if role.approvals_required == 1 else f"{role.approvals_required} approvals"
    return (
        f"{count} from {', '.join(role.approvers)}, never the requester; "
        f"unreviewed requests lapse after {format_duration(role.review_timeout)}"
    )


def _rule_text(rule: AutoApproveRule) -> str:
    parts = []
    if rule.requester_groups:
        parts.append(f"for members of {', '.join(rule.requester_groups)}")
    if rule.max_duration is not None:
        parts.append(f"for at most {format_duration(rule.max_duration)}")
    return "approved automatically " + " and ".join(parts)


def _rule_may_apply(identity: Identity, rule: AutoApproveRule) -> bool:
    """Whether the rule's group condition holds for ``identity`` (its duration is the asker's choice)."""
    return not rule.requester_groups or not identity.groups.isdisjoint(rule.requester_groups)


def _reason(role: Role) -> str:
    if role.reason.pattern:
        need = "required" if role.reason.required else "optional"
        return f"{need}, matching {role.reason.pattern}"
    return "required" if role.reason.required else "optional"
