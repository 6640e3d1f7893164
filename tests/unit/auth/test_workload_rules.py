"""Claim rules for workloads: how a verified token's claims are matched against the policy's rules,
which rules a policy refuses to load, and which settings cannot stand beside them."""

from __future__ import annotations

from typing import Any

import pytest

from jitgate.auth.workloads import claim_matches, matching_rules, rule_matches, start_problem
from jitgate.errors import PolicyFileError
from jitgate.policy.loader import parse_policy
from jitgate.policy.workloads import WorkloadRule

ISSUER = "https://token.actions.githubusercontent.com"


def rule(name: str = "orders-deploy", **fields: Any) -> WorkloadRule:
    values: dict[str, Any] = {
        "name": name,
        "issuer": ISSUER,
        "audience": "jitgate",
        "claims": {"repository": "acme/orders", "ref": "refs/heads/main"},
    }
    values.update(fields)
    return WorkloadRule.model_validate(values)


def job(**overrides: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "aud": "jitgate",
        "sub": "repo:acme/orders:ref:refs/heads/main",
        "repository": "acme/orders",
        "ref": "refs/heads/main",
        "environment": "production",
    }
    claims.update(overrides)
    return claims


@pytest.mark.parametrize(
    ("expected", "actual", "matches"),
    [
        ("acme/orders", "acme/orders", True),
        ("acme/orders", "acme/orders-fork", False),
        ("acme/orders", "Acme/Orders", False),  # exact means exact, case included
        (("refs/heads/main", "refs/heads/release"), "refs/heads/release", True),
        (("refs/heads/main", "refs/heads/release"), "refs/heads/feature", False),
        ("refs/tags/v*", "refs/tags/v1.2.3", True),
        ("refs/tags/v*", "refs/heads/v1", False),
        ("repo:acme/*:environment:production", "repo:acme/orders:environment:production", True),
        ("repo:acme/*:environment:production", "repo:acme/orders:environment:staging", False),
        ("refs/heads/[a]*", "refs/heads/[a]bc", False),  # with a *, the value is a shell pattern
        ("refs/heads/[a]", "refs/heads/[a]", True),  # without one, brackets are plain text
    ],
)
def test_a_claim_is_equal_one_of_several_or_a_pattern_with_a_star(
    expected: str | tuple[str, ...], actual: str, matches: bool
) -> None:
    assert claim_matches(expected, actual) is matches


@pytest.mark.parametrize("actual", [None, 74, True, ["acme/orders"], {"name": "acme/orders"}])
def test_a_claim_that_is_missing_or_not_a_string_never_matches(actual: object) -> None:
    assert not claim_matches("acme/orders", actual)
    assert not claim_matches("acme/*", actual)
    assert not claim_matches(("acme/orders", "74", "True"), actual)


def test_a_rule_needs_every_claim_its_audience_and_its_issuer() -> None:
    deploy = rule()
    assert rule_matches(deploy, job())
    assert rule_matches(deploy, job(aud=["other-app", "jitgate"]))
    assert not rule_matches(deploy, job(repository="acme/payments"))
    assert not rule_matches(deploy, job(ref="refs/heads/feature"))
    assert not rule_matches(deploy, job(ref=None))
    assert not rule_matches(deploy, job(aud="other-app"))
    assert not rule_matches(deploy, job(aud=["other-app"]))
    assert not rule_matches(deploy, job(iss="https://gitlab.example"))


def test_matching_keeps_every_rule_that_matches_so_overlaps_can_be_refused() -> None:
    narrow = rule("orders-deploy")
    broad = rule("acme-ci", claims={"repository_owner": "acme"})
    other = rule("payments", claims={"repository": "acme/payments"})
    claims = job(repository_owner="acme")
    assert [r.name for r in matching_rules([narrow, broad, other], claims)] == ["orders-deploy", "acme-ci"]


def test_a_kubernetes_service_account_is_matched_by_its_subject_not_its_nested_claim() -> None:
    account = rule(
        "migrator", issuer="https://k8s.example", claims={"sub": "system:serviceaccount:prod:migrator"}
    )
    claims = {
        "iss": "https://k8s.example",
        "aud": ["jitgate"],
        "sub": "system:serviceaccount:prod:migrator",
        "kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "migrator"}},
    }
    assert rule_matches(account, claims)
    nested = rule("nested", issuer="https://k8s.example", claims={"kubernetes.io": "prod"})
    assert not rule_matches(nested, claims)  # an object is not a string


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"issuer": "http://ci.example"}, "https"),
        ({"jwks_url": "http://ci.example/jwks"}, "https"),
        ({"claims": {"sub": "*"}}, "matches every token"),
        ({"claims": {"repository": ("acme/orders", "**")}}, "matches every token"),
        ({"claims": {"aud": "jitgate"}}, "checked by the broker"),
        ({"claims": {}}, "at least 1"),
        ({"claims": {"ref": ()}}, "at least one value"),
        ({"claims": {"bad name!": "x"}}, "not a claim name"),
    ],
)
def test_rules_that_would_trust_too_much_are_refused(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        rule(**fields)


def test_http_is_allowed_for_an_issuer_on_loopback_only() -> None:
    assert rule(issuer="http://127.0.0.1:8200").issuer == "http://127.0.0.1:8200"


POLICY = """
targets:
  - {{name: web-1, kind: ssh, address: 127.0.0.1}}
roles:
  - name: deploy
    targets: {{names: [web-1]}}
    ssh: {{logins: [deploy]}}
    max_duration: 1h
    requesters: [user:workload:orders-deploy]
    approval: auto
workloads:
  - name: orders-deploy
    issuer: {ISSUER}
    audience: jitgate
    claims: {{repository: acme/orders}}
  - name: {second}
    issuer: {ISSUER}
    audience: jitgate
    {jwks}
    claims: {{repository: acme/payments}}
"""


@pytest.mark.parametrize(
    ("second", "jwks", "says"),
    [
        ("orders-deploy", "", "defined twice"),
        ("payments", "jwks_url: https://elsewhere.example/jwks", "different jwks_url"),
    ],
)
def test_a_policy_whose_workloads_conflict_is_refused_with_its_file(
    second: str, jwks: str, says: str
) -> None:
    with pytest.raises(PolicyFileError, match=says):
        parse_policy(POLICY.format(ISSUER=ISSUER, second=second, jwks=jwks), "policy.yaml")
    assert parse_policy(POLICY.format(ISSUER=ISSUER, second="payments", jwks=""), "policy.yaml").workloads


def test_a_workload_issuer_that_is_the_peoples_issuer_or_a_people_namespace_of_workload_is_refused() -> None:
    rules = [rule()]
    assert start_problem(rules, None, "oidc") is None
    assert start_problem(rules, "https://login.example", "oidc") is None
    clash = start_problem(rules, ISSUER, "oidc")
    assert clash is not None
    assert "JITGATE_OIDC_ISSUER" in clash
    assert "orders-deploy" in clash
    namespace = start_problem(rules, None, "workload")
    assert namespace is not None
    assert "JITGATE_OIDC_NAMESPACE" in namespace
    assert "namespace of workload identities" in (start_problem([], None, "workload") or "")
