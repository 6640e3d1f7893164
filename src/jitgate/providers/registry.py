"""Find the credential provider of each target kind: the built-ins, then third-party entry points.

Providers are looked up in the ``jitgate.providers`` entry-point group, one factory per kind
(``kind = "package.module:create_provider"``, called with a ``ProviderContext``). Only the kinds
the policy uses are loaded. A provider that fails to import, to construct, or to look like a
``CredentialProvider`` is reported in one line and left out: the broker then refuses to issue for
that kind while every other kind keeps working.

The built-in kinds cannot be taken over by another distribution's entry point: a company that
wants its own PostgreSQL provider registers it under a kind of its own. Two distributions claiming
the same new kind is ambiguous, and the kind is refused until one of them is removed.

``validate_policy`` lets the providers judge what each role asks of each target it reaches, before
anything is requested: a provider may implement ``validate(role, target) -> list[str]`` (see
``PolicyValidator``) to report names that would need quoting, privilege specs it would refuse, bad
target options. It needs no server and no secret, so ``jitgate policy check`` can run it too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Protocol, runtime_checkable

from jitgate.policy.model import Policy, Role, Target
from jitgate.providers.base import CredentialProvider, ProviderContext

log = logging.getLogger(__name__)

GROUP = "jitgate.providers"
BUILTINS: Mapping[str, str] = {
    "ssh": "jitgate.providers.ssh.provider:create_provider",
    "postgres": "jitgate.providers.postgres:create_provider",
    "mariadb": "jitgate.providers.mariadb:create_provider",
    "ldap": "jitgate.providers.ldap:create_provider",
}


@runtime_checkable
class PolicyValidator(Protocol):
    """The optional hook a provider implements to check the policy when it is loaded."""

    def validate(self, role: Role, target: Target) -> list[str]:
        """One line per problem of ``role`` on ``target``, naming what is wrong; ``[]`` when fine.

        Called for every role and every target of the provider's kind that the role selects, at
        server start and by ``jitgate policy check``. Must not connect anywhere or read secrets.
        """
        ...


@dataclass(frozen=True, slots=True)
class ProviderLoad:
    """What loading gave: a provider per usable kind, and one line per problem met on the way."""

    providers: dict[str, CredentialProvider] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def discover(
    ctx: ProviderContext, kinds: Iterable[str], *, found: Iterable[EntryPoint] | None = None
) -> ProviderLoad:
    """Load a provider for each of ``kinds``; ``found`` replaces the installed entry points (tests)."""
    wanted = set(kinds)
    candidates, problems = _candidates(entry_points(group=GROUP) if found is None else found)
    providers: dict[str, CredentialProvider] = {}
    for kind in sorted(wanted):
        points = candidates.get(kind, [])
        if not points:
            problems.append(f"no provider is installed for kind {kind!r}")
        elif len(points) > 1:
            claims = ", ".join(point.value for point in points)
            problems.append(f"kind {kind!r} is claimed by several providers ({claims}); refusing all of them")
        else:
            provider, problem = _build(points[0], kind, ctx)
            if provider is not None:
                providers[kind] = provider
            else:
                problems.append(problem)
    return ProviderLoad(providers=providers, problems=tuple(problems))


def load_providers(
    ctx: ProviderContext, kinds: set[str], *, found: Iterable[EntryPoint] | None = None
) -> dict[str, CredentialProvider]:
    """``discover``, logging each problem as one ERROR line; kinds missing from the result are refused."""
    loaded = discover(ctx, kinds, found=found)
    for problem in loaded.problems:
        log.error("credential provider: %s", problem)
    return loaded.providers


def check_policy_kinds(policy: Policy, available: Iterable[str]) -> list[str]:
    """One line per target whose kind has no loaded provider."""
    usable = set(available)
    return [
        f"target {target.name}: no credential provider for kind {target.kind!r}"
        for target in policy.targets
        if target.kind not in usable
    ]


def validate_policy(policy: Policy, providers: Mapping[str, CredentialProvider]) -> list[str]:
    """Ask each target's provider about every role that reaches the target; one line per problem.

    Providers without a ``validate`` hook are skipped, as are targets whose kind has no provider
    (``check_policy_kinds`` names those). A hook that raises is itself reported as a problem, so a
    broken plugin cannot wave a policy through. Repeated lines (a bad target option seen once per
    role) are reported once, in policy order.
    """
    problems: list[str] = []
    for role in policy.roles:
        for target in policy.targets_of(role):
            provider = providers.get(target.kind)
            if not isinstance(provider, PolicyValidator):
                continue
            try:
                found = [" ".join(str(line).split()) for line in provider.validate(role, target)]
            except Exception as exc:
                found = [
                    f"role {role.name}, target {target.name}: the {target.kind} provider failed to "
                    f"check it: {_first_line(exc)}"
                ]
            problems.extend(line for line in found if line)
    return list(dict.fromkeys(problems))


def _candidates(points: Iterable[EntryPoint]) -> tuple[dict[str, list[EntryPoint]], list[str]]:
    candidates = {kind: [EntryPoint(kind, value, GROUP)] for kind, value in BUILTINS.items()}
    problems: list[str] = []
    for point in points:
        if point.group != GROUP:
            continue
        if point.name in BUILTINS:
            if point.value != BUILTINS[point.name]:
                problems.append(
                    f"entry point {point.name} = {point.value} ignored: {point.name!r} is a built-in kind"
                )
            continue
        known = candidates.setdefault(point.name, [])
        if all(other.value != point.value for other in known):
            known.append(point)
    return candidates, problems


def _build(point: EntryPoint, kind: str, ctx: ProviderContext) -> tuple[CredentialProvider | None, str]:
    label = f"provider {kind!r} ({point.value})"
    try:
        factory = point.load()
    except Exception as exc:
        return None, f"{label} failed to import: {_first_line(exc)}"
    if not callable(factory):
        return None, f"{label} is not callable"
    try:
        provider = factory(ctx)
    except Exception as exc:
        return None, f"{label} failed to start: {_first_line(exc)}"
    if not isinstance(provider, CredentialProvider):
        return None, f"{label} returned {type(provider).__name__}, which is not a CredentialProvider"
    if provider.kind != kind:
        return None, f"{label} serves kind {provider.kind!r}, not {kind!r}"
    return provider, ""


def _first_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
