"""Attacks on workload sign-in by someone who can get a real token from a trusted CI issuer for a
repository of their own, or write any JWT naming that issuer: claims shaped to slip through a rule
(look-alikes, case, control characters, lists and objects, an unanchored pattern), audiences and
issuers that almost match, keys an issuer should never serve, tokens at the edge of their
lifetime, text meant to mislead whoever reads the audit record, and forged tokens meant to make
the broker hammer the issuer or hold its request threads."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.auth.base import Authenticator, authenticate
from jitgate.auth.workloads import WorkloadAuthenticator
from jitgate.errors import Unauthenticated
from jitgate.policy.loader import parse_policy
from jitgate.runtime import build_runtime
from jitgate.settings import Settings
from jitgate.workflow.users import add_user
from support.ci_issuer import CiIssuer, ci_issuer
from support.keyserver import jwk_of

POLICY = """
workloads:
  - name: orders-deploy
    issuer: {ci}
    audience: jitgate
    claims:
      repository: acme/orders
      ref: refs/heads/main
      environment: production
  - name: orders-release
    issuer: {ci}
    audience: jitgate
    claims:
      repository: acme/orders
      ref: "refs/tags/v*"
"""


@pytest.fixture(scope="module")
def ci() -> Iterator[CiIssuer]:
    with ci_issuer() as running:
        yield running


def workloads_of(ci: CiIssuer, **options: Any) -> WorkloadAuthenticator:
    policy = parse_policy(POLICY.format(ci=ci.issuer), "policy.yaml")
    return WorkloadAuthenticator(lambda: policy.workloads, **options)


@pytest.fixture
def chain(ci: CiIssuer) -> list[Authenticator]:
    return [workloads_of(ci)]


def sign_in(chain: list[Authenticator], bearer: str) -> Any:
    return authenticate(chain, f"Bearer {bearer}")


def refused(chain: list[Authenticator], bearer: str, says: str = "refused|matches no") -> str:
    with pytest.raises(Unauthenticated, match=says) as caught:
        sign_in(chain, bearer)
    assert "\n" not in str(caught.value)
    return str(caught.value)


SLIPPED_CLAIMS: dict[str, dict[str, Any]] = {
    "a sibling repository": {"repository": "acme/orders-evil"},
    "another case": {"repository": "Acme/Orders"},
    "a Greek omicron": {"repository": "acme/\u03bfrders"},
    "a trailing NUL": {"repository": "acme/orders\x00"},
    "a trailing newline": {"repository": "acme/orders\n"},
    "a zero-width space": {"repository": "acme/orders\u200b"},
    "the value in a list": {"repository": ["acme/orders"]},
    "the value in an object": {"repository": {"name": "acme/orders"}},
    "a branch that starts like main": {"ref": "refs/heads/main-evil"},
    "a branch named after main": {"ref": "refs/heads/evil/refs/heads/main"},
    "a number for a string": {"environment": 1},
    "no environment": {"environment": None},
    "a tag pattern not anchored at the start": {"ref": "refs/heads/x/refs/tags/v1", "environment": None},
}


@pytest.mark.parametrize("case", SLIPPED_CLAIMS)
def test_a_claim_that_only_looks_like_the_rules_matches_no_rule(
    chain: list[Authenticator], ci: CiIssuer, case: str
) -> None:
    message = refused(chain, ci.sign({**ci.github_job(), **SLIPPED_CLAIMS[case]}), "matches no workload rule")
    assert "acme" not in message  # the job's claims are not echoed


def test_an_audience_list_counts_only_when_it_holds_the_rules_audience_exactly(
    chain: list[Authenticator], ci: CiIssuer
) -> None:
    # Several audiences are standard JWT; one of them must be this broker's, compared exactly.
    assert (
        sign_in(chain, ci.sign(ci.github_job(audience=["other", "jitgate"]))).name == "workload:orders-deploy"
    )
    for audience in (
        ["other", "jitgate-evil"],
        "Jitgate",
        "jitgate ",
        [["jitgate"]],
        "https://github.com/acme",
    ):
        refused(chain, ci.sign(ci.github_job(audience=audience)), "refused")


def test_an_issuer_that_almost_matches_is_not_trusted_and_costs_no_fetch(
    chain: list[Authenticator], ci: CiIssuer
) -> None:
    before = len(ci.server.asked)
    for issuer in (
        ci.issuer + "/",
        ci.issuer.upper(),
        ci.issuer.replace("http:", "https:"),
        ci.issuer + "\x00",
    ):
        refused(chain, ci.sign(ci.github_job(iss=issuer)), "issuer is not one this broker trusts")
    assert len(ci.server.asked) == before


def forged(claims: dict[str, Any], header: dict[str, Any], signature: bytes = b"sig") -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return ".".join(part(json.dumps(value).encode()) for value in (header, claims)) + "." + part(signature)


def test_a_token_whose_payload_names_its_issuer_twice_is_checked_against_the_issuer_it_was_routed_by(
    chain: list[Authenticator], ci: CiIssuer
) -> None:
    payload = json.dumps(ci.github_job()).replace('"iss"', '"iss": "https://evil.example", "iss"', 1)
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","kid":"k1"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()
    refused(chain, f"{header}.{body}.c2ln", "refused")


KEYS_NEVER_TRUSTED: dict[str, Callable[[CiIssuer], tuple[dict[str, Any], str]]] = {
    "an oct key, signing HS256": lambda ci: (
        {"kty": "oct", "kid": "k9", "k": base64.urlsafe_b64encode(b"s" * 32).rstrip(b"=").decode()},
        jwt.encode(ci.github_job(), b"s" * 32, algorithm="HS256", headers={"kid": "k9"}),
    ),
    "an RSA key whose alg says HS256": lambda ci: (
        {**jwk_of(ci.key, "k9"), "alg": "HS256"},
        jwt.encode(ci.github_job(), b"s" * 32, algorithm="HS256", headers={"kid": "k9"}),
    ),
}


@pytest.mark.parametrize("case", KEYS_NEVER_TRUSTED)
def test_a_key_set_serving_a_symmetric_or_mislabelled_key_signs_nothing(case: str) -> None:
    with ci_issuer() as ci:
        key, token = KEYS_NEVER_TRUSTED[case](ci)
        ci.server.files["/jwks"] = json.dumps({"keys": [jwk_of(ci.key), key]}).encode()
        refused([workloads_of(ci)], token, "refused|not accepted")


def test_a_token_just_past_exp_is_taken_within_the_leeway_and_refused_after_it(
    chain: list[Authenticator], ci: CiIssuer
) -> None:
    now = int(time.time())
    assert (
        sign_in(chain, ci.sign(ci.github_job(iat=now - 300, exp=now - 10))).name == "workload:orders-deploy"
    )
    refused(chain, ci.sign(ci.github_job(iat=now - 300, exp=now - 60)), "expired")
    refused(chain, ci.sign(ci.github_job(iat=now + 3600, exp=now + 7200)), "not yet valid")
    refused(chain, ci.sign(ci.github_job(iat=now - 1, exp=now + 86400 + 60)), "longer than 24h")


def test_the_audit_proof_carries_no_control_or_bidi_character_from_the_token(
    chain: list[Authenticator], ci: CiIssuer
) -> None:
    sub = "repo:acme/orders:ref:refs/heads/main\n\x1b[2J\u202eyppah"
    who = sign_in(chain, ci.sign(ci.github_job(sub=sub, jti="id with spaces\n")))
    assert who.workload.token_id is None
    assert who.workload.subject.isprintable()
    assert "\u202e" not in who.workload.subject
    assert "\x1b" not in who.workload.subject


def test_forged_tokens_with_unknown_kids_make_the_broker_fetch_the_keys_at_most_once_a_cool_down(
    ci: CiIssuer,
) -> None:
    chain: list[Authenticator] = [workloads_of(ci)]
    assert sign_in(chain, ci.sign(ci.github_job())).name == "workload:orders-deploy"
    before = ci.fetches()
    for n in range(20):
        refused(chain, forged(ci.github_job(), {"alg": "RS256", "kid": f"k{n + 100}"}), "refused")
    assert ci.fetches() - before <= 1


def test_while_the_issuers_keys_cannot_be_fetched_forged_tokens_are_refused_without_asking_again() -> None:
    with ci_issuer() as ci:
        workloads = workloads_of(ci)
        keys = ci.server.files.pop("/jwks")  # the issuer's key endpoint fails from the start
        for n in range(20):
            refused([workloads], forged(ci.github_job(), {"alg": "RS256", "kid": f"x{n}"}), "cannot fetch")
        assert ci.fetches() == 1
        ci.server.files["/jwks"] = keys


def test_a_key_set_fetched_before_an_outage_still_checks_the_tokens_it_signed() -> None:
    with ci_issuer() as ci:
        workloads = workloads_of(ci)
        assert sign_in([workloads], ci.sign(ci.github_job())).name == "workload:orders-deploy"
        del ci.server.files["/jwks"]
        for n in range(5):
            refused([workloads], forged(ci.github_job(), {"alg": "RS256", "kid": f"x{n}"}), "refused")
        assert sign_in([workloads], ci.sign(ci.github_job())).name == "workload:orders-deploy"


def test_when_the_issuer_is_gone_each_forged_token_does_not_cost_another_connection_attempt() -> None:
    with ci_issuer() as ci:
        workloads = workloads_of(ci)
        token = ci.sign(ci.github_job())
        del ci.server.files["/.well-known/openid-configuration"]
        for _ in range(10):
            refused([workloads], token, "discovery document|cannot fetch")
        assert ci.server.asked.count("/.well-known/openid-configuration") == 1


def test_after_the_retry_pause_the_keys_are_asked_for_again() -> None:
    with ci_issuer() as ci:
        workloads = workloads_of(ci, keys_retry_seconds=0)
        token = ci.sign(ci.github_job())
        keys = ci.server.files.pop("/jwks")
        refused([workloads], token, "cannot fetch")
        ci.server.files["/jwks"] = keys
        assert sign_in([workloads], token).name == "workload:orders-deploy"


def test_a_short_rsa_key_in_the_key_set_signs_nothing() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key is the attack
    with ci_issuer(weak) as ci:
        with pytest.warns(jwt.InsecureKeyLengthWarning):
            token = ci.sign(ci.github_job())
        refused([workloads_of(ci)], token, "below the minimum")


BROKER_POLICY = """
targets:
  - {{name: web-1, kind: ssh, address: 127.0.0.1}}
roles:
  - name: ops
    targets: {{names: [web-1]}}
    ssh: {{logins: [ops]}}
    max_duration: 30m
    requesters: [user:bob]
    approvers: [user:carol]
  - name: bob-auto
    targets: {{names: [web-1]}}
    ssh: {{logins: [bob]}}
    max_duration: 30m
    requesters: [user:bob]
    approval: auto
workloads:
  - name: orders-deploy
    issuer: {issuer}
    audience: jitgate
    claims: {{repository: acme/orders}}
    groups: [admins, sre]
"""


def test_a_workload_approves_nothing_it_is_not_named_for_and_reaches_no_admin_endpoint(
    ci: CiIssuer, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(BROKER_POLICY.format(issuer=ci.issuer))
    settings = Settings(data_dir=tmp_path / "data", policy_file=policy, oidc_admin_groups=["admins"])
    rt = build_runtime(settings)
    _, bob = add_user(rt.ctx.db, rt.ctx.audit, rt.ctx.clock, actor="test", name="bob", groups=[])
    job = {"Authorization": f"Bearer {ci.sign(ci.github_job())}"}
    try:
        with TestClient(create_app(rt, run_scheduler=False)) as client:
            person = {"Authorization": f"Bearer {bob}"}
            pending = client.post("/api/v1/requests", json={"role": "ops", "reason": "x"}, headers=person)
            held = client.post("/api/v1/requests", json={"role": "bob-auto", "reason": "x"}, headers=person)
            review = client.post(
                f"/api/v1/requests/{pending.json()['id']}/reviews", json={"verdict": "approve"}, headers=job
            )
            assert review.status_code in (403, 404)
            assert (
                client.get(f"/api/v1/requests/{pending.json()['id']}", headers=person).json()["state"]
                == "PENDING"
            )
            revoke = client.post(f"/api/v1/grants/{held.json()['grant']['id']}/revoke", json={}, headers=job)
            assert revoke.status_code in (403, 404)
            assert (
                client.get(f"/api/v1/requests/{held.json()['id']}", headers=person).json()["state"]
                == "ACTIVE"
            )
            for method, path in (
                ("GET", "/api/v1/users"),
                ("POST", "/api/v1/users/bob/disable"),
            ):
                assert client.request(method, path, headers=job).status_code == 403, path
            assert client.get("/api/v1/whoami", headers=job).json()["admin"] is False
            seen = client.get("/api/v1/audit", headers=job).json()
            assert {event["actor"] for event in seen} <= {"workload:orders-deploy"}  # not bob's record
    finally:
        rt.ctx.db.dispose()


def test_forged_tokens_arriving_together_while_the_issuer_hangs_cost_one_connection_not_one_each() -> None:
    # The issuer's address accepts connections and never answers (each fetch runs into its timeout).
    with socket.create_server(("127.0.0.1", 0)) as hanging, ci_issuer() as ci:
        port = hanging.getsockname()[1]
        policy = parse_policy(
            POLICY.format(ci=ci.issuer).replace(
                "audience: jitgate\n", f"audience: jitgate\n    jwks_url: http://127.0.0.1:{port}/jwks\n"
            ),
            "policy.yaml",
        )
        chain: list[Authenticator] = [WorkloadAuthenticator(lambda: policy.workloads)]
        accepted: list[socket.socket] = []

        def accept() -> None:
            hanging.settimeout(0.2)
            while len(accepted) < 8 and not done.is_set():
                with contextlib.suppress(TimeoutError):
                    accepted.append(hanging.accept()[0])

        def attempt(n: int) -> None:
            with contextlib.suppress(Unauthenticated):
                sign_in(chain, forged(ci.github_job(), {"alg": "RS256", "kid": f"x{n}"}))

        done = threading.Event()
        acceptor = threading.Thread(target=accept)
        acceptor.start()
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(attempt, range(6)))
        done.set()
        acceptor.join()
        for conn in accepted:
            conn.close()
        assert len(accepted) == 1
