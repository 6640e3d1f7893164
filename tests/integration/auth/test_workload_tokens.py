"""Workload tokens from a real issuer (discovery and JWKS over HTTP), shaped like GitHub Actions'
and Kubernetes' own, through the broker's chain of authenticators: the right job becomes its
workload and nothing else; a token of another repository, branch, audience or issuer, an expired
one, an unsigned one, one signed with HMAC keyed by the JWKS, one signed by a key the issuer does
not publish, or one that lives too long is refused with one line."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from jitgate.auth.base import Authenticator, authenticate
from jitgate.auth.oidc import OidcAuthenticator
from jitgate.auth.workloads import WorkloadAuthenticator
from jitgate.domain.identity import IdentityKind
from jitgate.errors import Unauthenticated
from jitgate.policy.loader import parse_policy
from jitgate.policy.model import Policy
from jitgate.workflow.context import PolicyHolder
from support.ci_issuer import CiIssuer, ci_issuer
from support.keyserver import jwk_of

OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

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
    issuer: {ci}
    audience: jitgate
    claims:
      repository: acme/orders
      ref: refs/heads/main
      environment: production
    groups: [deployers]
  - name: orders-release
    issuer: {ci}
    audience: jitgate
    claims:
      repository: acme/orders
      ref: "refs/tags/v*"
  - name: migrator
    issuer: {k8s}
    audience: jitgate
    jwks_url: {k8s}/jwks
    claims:
      sub: system:serviceaccount:prod:migrator
"""


@pytest.fixture(scope="module")
def ci() -> Iterator[CiIssuer]:
    with ci_issuer() as running:
        yield running


@pytest.fixture(scope="module")
def k8s() -> Iterator[CiIssuer]:
    with ci_issuer() as running:
        yield running


@pytest.fixture(scope="module")
def people() -> Iterator[CiIssuer]:
    with ci_issuer() as running:
        yield running


@pytest.fixture
def policies(ci: CiIssuer, k8s: CiIssuer) -> PolicyHolder:
    return PolicyHolder(parse_policy(POLICY.format(ci=ci.issuer, k8s=k8s.issuer), "policy.yaml"))


@pytest.fixture
def chain(policies: PolicyHolder, people: CiIssuer) -> list[Authenticator]:
    """As ``runtime.authenticators`` builds it: the people's OIDC issuer, then the workloads'."""
    return [
        OidcAuthenticator(issuer=people.issuer, audience="jitgate", jwks_url=people.jwks_url),
        WorkloadAuthenticator(lambda: policies.current.workloads),
    ]


def sign_in(chain: list[Authenticator], bearer: str) -> Any:
    return authenticate(chain, f"Bearer {bearer}")


def refused(chain: list[Authenticator], bearer: str, says: str) -> str:
    with pytest.raises(Unauthenticated, match=says) as caught:
        sign_in(chain, bearer)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_right_job_becomes_its_workload_with_the_rules_groups_and_nothing_more(
    chain: list[Authenticator], ci: CiIssuer
) -> None:
    claims = ci.github_job(groups=["admins"], preferred_username="root")
    who = sign_in(chain, ci.sign(claims))
    assert who.name == "workload:orders-deploy"
    assert who.groups == {"deployers"}  # the rule's; the token's own groups claim counts for nothing
    assert who.kind is IdentityKind.SERVICE
    assert not who.admin
    assert who.source == "workload"
    assert who.display_name is None
    assert who.auth_time is None  # no sign-in a role's ``requires`` could accept
    assert who.principals == {"user:workload:orders-deploy", "group:deployers"}
    assert who.workload is not None
    assert who.workload.rule == "orders-deploy"
    assert who.workload.issuer == ci.issuer
    assert who.workload.subject == "repo:acme/orders:environment:production"
    assert who.workload.token_id == claims["jti"]
    assert who.expires_at is not None
    assert int(who.expires_at.timestamp()) == claims["exp"]


def test_a_tag_build_is_the_release_workload_not_the_deploy_one(
    chain: list[Authenticator], ci: CiIssuer
) -> None:
    tag = ci.github_job(ref="refs/tags/v2.4.0", environment=None)
    assert sign_in(chain, ci.sign(tag)).name == "workload:orders-release"


@pytest.mark.parametrize(
    "overrides",
    [
        {"repository": "acme/orders-fork"},
        {"repository": "mallory/orders", "repository_owner": "mallory"},
        {"ref": "refs/heads/feature"},
        {"ref": "refs/pull/7/merge"},
        {"environment": "staging"},
        {"environment": None, "ref": "refs/heads/feature"},
        {"repository": None},
    ],
    ids=["fork", "other-owner", "branch", "pull-request", "environment", "no-environment", "no-repository"],
)
def test_a_job_of_another_repository_branch_or_environment_is_refused_without_echoing_its_claims(
    chain: list[Authenticator], ci: CiIssuer, overrides: dict[str, Any]
) -> None:
    message = refused(chain, ci.sign({**ci.github_job(), **overrides}), "matches no workload rule")
    assert ci.issuer in message
    for value in overrides.values():
        if value is not None:
            assert value not in message
    assert "acme/orders" not in message


def test_a_kubernetes_service_account_token_becomes_its_workload(
    chain: list[Authenticator], k8s: CiIssuer
) -> None:
    who = sign_in(chain, k8s.sign(k8s.service_account("prod", "migrator")))
    assert who.name == "workload:migrator"
    assert who.workload is not None
    assert who.workload.subject == "system:serviceaccount:prod:migrator"
    refused(chain, k8s.sign(k8s.service_account("prod", "default")), "matches no workload rule")
    refused(chain, k8s.sign(k8s.service_account("staging", "migrator")), "matches no workload rule")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hmac_keyed_with_the_jwks(ci: CiIssuer) -> str:
    """A correct HS256 signature keyed with the JWK the issuer serves: a lax verifier takes it."""
    header = _b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    body = _b64(json.dumps(ci.github_job()).encode())
    secret = json.dumps(jwk_of(ci.key, "k1")).encode()
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def unsigned(ci: CiIssuer, signature: str = "AAAA") -> str:
    """``alg: none``; with a signature segment so that it reaches the verifier."""
    header = _b64(json.dumps({"alg": "none", "kid": "k1", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(ci.github_job()).encode())}.{signature}"


BAD_TOKENS = {
    "expired": (
        lambda ci: ci.sign(ci.github_job(exp=int(time.time()) - 3600, iat=int(time.time()) - 3900)),
        "expired",
    ),
    "not yet valid": (lambda ci: ci.sign(ci.github_job(nbf=int(time.time()) + 600)), "not yet valid"),
    "issued in the future": (lambda ci: ci.sign(ci.github_job(iat=int(time.time()) + 600)), "not yet valid"),
    "no exp": (lambda ci: ci.sign(ci.github_job(exp=None)), '"exp"'),
    "no iat": (lambda ci: ci.sign(ci.github_job(iat=None)), '"iat"'),
    "wrong audience": (lambda ci: ci.sign(ci.github_job(audience="sts.amazonaws.com")), "(?i)audience"),
    "default audience": (
        lambda ci: ci.sign(ci.github_job(audience="https://github.com/acme")),
        "(?i)audience",
    ),
    "alg none": (unsigned, "workload token refused"),
    "alg none, empty signature": (lambda ci: unsigned(ci, ""), "unrecognised bearer token"),
    "hs256 keyed with the jwks": (hmac_keyed_with_the_jwks, "workload token refused"),
    "key not in the jwks": (
        lambda ci: ci.sign(ci.github_job(), key=OTHER_KEY, kid="k9"),
        "workload token refused",
    ),
    "other key under the issuer's kid": (
        lambda ci: ci.sign(ci.github_job(), key=OTHER_KEY),
        "Signature verification failed",
    ),
    "valid for two days": (lambda ci: ci.sign(ci.github_job(lifetime=2 * 86400)), "longer than 24h"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_tokens_from_a_trusted_workload_issuer_are_refused_with_one_line(
    chain: list[Authenticator], ci: CiIssuer, case: str
) -> None:
    make, says = BAD_TOKENS[case]
    refused(chain, make(ci), says)


def test_a_token_from_an_issuer_the_policy_does_not_name_is_refused_whoever_signed_it(
    chain: list[Authenticator], ci: CiIssuer
) -> None:
    with ci_issuer(ci.key) as stranger:  # the very same key, served under another issuer
        forged = stranger.sign(stranger.github_job())
        message = refused(chain, forged, "issuer is not one this broker trusts")
        assert stranger.issuer not in message
        assert stranger.fetches() == 0  # its keys are never even asked for
    claims = ci.github_job(iss=ci.issuer + "/")  # iss compared exactly
    refused(chain, ci.sign(claims), "issuer is not one this broker trusts")


def test_the_peoples_issuer_and_the_workloads_issuers_each_get_their_own_tokens(
    chain: list[Authenticator], ci: CiIssuer, people: CiIssuer
) -> None:
    person = people.sign(people.github_job(sub="u-1"))
    assert sign_in(chain, person).name == "oidc:u-1"
    # A person's token shaped like a job's is still a person: the issuer chooses, not the claims.
    assert sign_in(chain, people.sign(people.github_job())).name.startswith("oidc:")
    # The CI issuer's key cannot speak for the people's issuer, nor the other way round.
    refused(chain, ci.sign(people.github_job(sub="u-1")), "OIDC token refused")
    refused(chain, people.sign(ci.github_job()), "workload token refused")


def test_two_rules_matching_one_token_are_refused_as_ambiguous(
    policies: PolicyHolder, chain: list[Authenticator], ci: CiIssuer
) -> None:
    broad = policies.current.workloads[0].model_copy(
        update={"name": "acme-ci", "claims": {"repository_owner": "acme"}}
    )
    policies.replace(policies.current.model_copy(update={"workloads": (*policies.current.workloads, broad)}))
    message = refused(chain, ci.sign(ci.github_job()), "several workload rules")
    assert "orders-deploy, acme-ci" in message


def test_rules_come_from_the_policy_in_force_so_a_reload_takes_effect_at_once(
    policies: PolicyHolder, chain: list[Authenticator], ci: CiIssuer
) -> None:
    token = ci.sign(ci.github_job())
    assert sign_in(chain, token).name == "workload:orders-deploy"
    kept = tuple(r for r in policies.current.workloads if r.name != "orders-deploy")
    policies.replace(policies.current.model_copy(update={"workloads": kept}))
    refused(chain, token, "matches no workload rule")
    without_ci: Policy = policies.current.model_copy(
        update={"workloads": tuple(r for r in kept if r.issuer != ci.issuer)}
    )
    policies.replace(without_ci)
    refused(chain, token, "issuer is not one this broker trusts")


def test_keys_are_found_by_discovery_and_cached(chain: list[Authenticator], ci: CiIssuer) -> None:
    before = ci.fetches()
    for _ in range(5):
        sign_in(chain, ci.sign(ci.github_job()))
    assert ci.fetches() - before <= 1
    assert "/.well-known/openid-configuration" in ci.server.asked


def test_keys_that_cannot_be_fetched_refuse_the_token_naming_the_issuer() -> None:
    with ci_issuer() as gone:
        token = gone.sign(gone.github_job())
        issuer = gone.issuer
        policy = parse_policy(POLICY.format(ci=issuer, k8s="https://k8s.example"), "policy.yaml")
    workloads = WorkloadAuthenticator(lambda: policy.workloads)
    with pytest.raises(Unauthenticated, match=r"discovery document|cannot fetch"):
        authenticate([workloads], f"Bearer {token}")


def test_a_token_signed_with_another_asymmetric_algorithm_than_the_keys_is_refused(
    chain: list[Authenticator], ci: CiIssuer
) -> None:
    swapped = jwt.encode(ci.github_job(), ci.key, algorithm="PS256", headers={"kid": "k1"})
    refused(chain, swapped, "workload token refused")


def test_a_key_the_issuer_withdraws_stops_working_once_its_key_set_is_fetched_again() -> None:
    with ci_issuer() as rotating:
        policy = parse_policy(POLICY.format(ci=rotating.issuer, k8s="https://k8s.example"), "policy.yaml")
        workloads = WorkloadAuthenticator(lambda: policy.workloads, keys_lifespan_seconds=1)
        old = rotating.sign(rotating.github_job())
        assert authenticate([workloads], f"Bearer {old}").name == "workload:orders-deploy"
        rotating.server.files["/jwks"] = json.dumps({"keys": [jwk_of(OTHER_KEY, "k2")]}).encode()
        new = rotating.sign(rotating.github_job(), key=OTHER_KEY, kid="k2")

        def withdrawn() -> bool:
            try:
                authenticate([workloads], f"Bearer {old}")
            except Unauthenticated:
                return True
            return False

        deadline = time.monotonic() + 10
        while not withdrawn():
            assert time.monotonic() < deadline, "the withdrawn key is still accepted"
            time.sleep(0.1)  # polling for the key set's next fetch
        assert authenticate([workloads], f"Bearer {new}").name == "workload:orders-deploy"
