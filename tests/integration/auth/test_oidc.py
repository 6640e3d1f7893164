"""OIDC bearer tokens verified against a JWKS served over real HTTP: good tokens map to an identity
named after issuer and subject, with groups; forged, expired and wrong-audience tokens are refused
(algorithm attacks: ``test_oidc_forgeries.py``); a display name never makes a caller into a local user."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.auth.base import authenticate
from jitgate.auth.oidc import OidcAuthenticator
from jitgate.errors import Unauthenticated
from jitgate.runtime import build_runtime
from jitgate.settings import Settings
from jitgate.workflow.users import add_user
from support.keyserver import KeyServer, jwks_of

ISSUER = "https://idp.example"
AUDIENCE = "jitgate"
SIGNING = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    with KeyServer({"/jwks.json": jwks_of(SIGNING)}) as server:
        yield f"{server.url}/jwks.json"


def token(key: Any = SIGNING, alg: str = "RS256", kid: str = "k1", **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u-1",
        "preferred_username": "alice",
        "groups": ["engineers", "sre-leads"],
        "iat": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, key, algorithm=alg, headers={"kid": kid}
    )


@pytest.fixture
def oidc(jwks_url: str) -> OidcAuthenticator:
    return OidcAuthenticator(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_url, admin_groups=["sre-leads"])


def test_a_valid_token_becomes_an_identity_with_groups(oidc: OidcAuthenticator) -> None:
    who = authenticate([oidc], f"Bearer {token()}")
    assert who.name == "oidc:u-1"
    assert who.display_name == "alice"
    assert who.groups == {"engineers", "sre-leads"}
    assert who.admin
    assert who.source == "oidc"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: token(key=OTHER), "Signature verification failed"),
        (lambda: token(exp=int(time.time()) - 3600), "expired"),
        (lambda: token(aud="someone-else"), "(?i)audience"),
        (lambda: token(iss="https://evil.example"), "(?i)issuer"),
        (lambda: token(exp=None), "exp"),
        (lambda: token(key=ec.generate_private_key(ec.SECP256R1()), alg="ES256"), "refused"),
    ],
)
def test_bad_tokens_are_refused(oidc: OidcAuthenticator, make: Any, reason: str) -> None:
    with pytest.raises(Unauthenticated, match=reason):
        authenticate([oidc], f"Bearer {make()}")


def test_the_name_comes_from_the_subject_in_the_issuers_namespace(jwks_url: str) -> None:
    plain = authenticate(
        [OidcAuthenticator(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_url, namespace="corp")],
        f"Bearer {token(sub='u-7', preferred_username='jitgate')}",
    )
    assert plain.name == "corp:u-7"
    assert plain.display_name == "jitgate"  # a reserved name as display name decides nothing
    odd = authenticate(
        [OidcAuthenticator(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_url)],
        f"Bearer {token(sub='repo:org/app:ref:refs/heads/main')}",
    )
    assert odd.name.startswith("oidc:sha256-")
    assert ":" not in odd.name.removeprefix("oidc:")


SHARED_POLICY = """
targets:
  - {name: web-1, kind: ssh, address: 127.0.0.1}
roles:
  - name: shell
    targets: {names: [web-1]}
    ssh: {logins: [deploy]}
    max_duration: 1h
    requesters: [user:alice, user:bob, user:oidc:u-9]
    approvers: [user:bob]
  - name: self-serve
    targets: {names: [web-1]}
    ssh: {logins: [deploy]}
    max_duration: 1h
    requesters: [user:bob]
    approval: auto
"""


@pytest.fixture
def broker(jwks_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(SHARED_POLICY)
    settings = Settings(
        data_dir=tmp_path / "data",
        policy_file=policy,
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=jwks_url,
    )
    rt = build_runtime(settings)
    tokens = {}
    for name in ("alice", "bob"):
        _, tokens[name] = add_user(rt.ctx.db, rt.ctx.audit, rt.ctx.clock, actor="test", name=name, groups=[])
    with TestClient(create_app(rt, run_scheduler=False)) as client:
        yield client, tokens
    rt.ctx.db.dispose()


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_an_oidc_caller_named_bob_gets_nothing_of_local_bob(
    broker: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = broker
    bob, alice = _bearer(tokens["bob"]), _bearer(tokens["alice"])
    grant = client.post("/api/v1/requests", json={"role": "self-serve"}, headers=bob).json()["grant"]
    pending = client.post("/api/v1/requests", json={"role": "shell"}, headers=alice).json()
    impostor = _bearer(token(sub="u-evil", preferred_username="bob", groups=[]))

    me = client.get("/api/v1/whoami", headers=impostor).json()
    assert (me["name"], me["display_name"]) == ("oidc:u-evil", "bob")
    assert client.get("/api/v1/grants", headers=impostor).json() == []
    assert client.get(f"/api/v1/grants/{grant['id']}", headers=impostor).status_code == 404
    assert client.post(f"/api/v1/grants/{grant['id']}/revoke", json={}, headers=impostor).status_code == 404
    assert client.get(f"/api/v1/requests/{pending['id']}", headers=impostor).status_code == 404
    vote = client.post(
        f"/api/v1/requests/{pending['id']}/reviews", json={"verdict": "approve"}, headers=impostor
    )
    assert vote.status_code == 404  # what the caller may not see does not exist for them
    key = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    cert = client.post(
        "/api/v1/ssh/certificates", json={"target": "web-1", "public_key": key.decode()}, headers=impostor
    )
    assert cert.status_code == 403
    assert client.post("/api/v1/requests", json={"role": "self-serve"}, headers=impostor).status_code == 403

    assert client.get(f"/api/v1/grants/{grant['id']}", headers=bob).json()["state"] == "ACTIVE"
    assert client.get(f"/api/v1/requests/{pending['id']}", headers=bob).json()["state"] == "PENDING"


def test_policy_names_an_oidc_identity_by_namespace_and_subject(
    broker: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = broker
    made = client.post(
        "/api/v1/requests",
        json={"role": "shell"},
        headers=_bearer(token(sub="u-9", preferred_username="someone", groups=[])),
    )
    assert made.status_code == 201
    assert made.json()["requester"] == "oidc:u-9"
    other = client.post(
        "/api/v1/requests",
        json={"role": "shell"},
        headers=_bearer(token(sub="u-8", preferred_username="u-9")),
    )
    assert other.status_code == 403


def test_an_oidc_web_session_shows_the_display_name_and_ends_with_the_token(
    broker: tuple[TestClient, dict[str, str]],
) -> None:
    import re

    client, _ = broker
    page = client.get("/ui/login")
    form = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert form is not None
    short = token(sub="u-9", preferred_username="<b>bob</b>", exp=int(time.time()) + 2)
    signed_in = client.post("/ui/login", data={"token": short, "csrf": form.group(1)})
    assert "&lt;b&gt;bob&lt;/b&gt; (oidc:u-9)" in signed_in.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if client.get("/ui/", follow_redirects=False).status_code == 303:
            break
        time.sleep(0.2)
    assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"


def test_tokens_for_any_trusted_audience_are_accepted_and_others_refused(jwks_url: str) -> None:
    both = OidcAuthenticator(issuer=ISSUER, audience=[AUDIENCE, "jitgate-cli"], jwks_url=jwks_url)
    assert authenticate([both], f"Bearer {token(aud='jitgate-cli')}").name == "oidc:u-1"
    assert authenticate([both], f"Bearer {token(aud=AUDIENCE)}").name == "oidc:u-1"
    with pytest.raises(Unauthenticated, match=r"(?i)audience"):
        authenticate([both], f"Bearer {token(aud='jitgate-web')}")
    with pytest.raises(ValueError, match="audience"):
        OidcAuthenticator(issuer=ISSUER, audience=[], jwks_url=jwks_url)


def test_the_sign_in_time_and_strength_go_into_the_identity(oidc: OidcAuthenticator) -> None:
    signed_in = int(time.time()) - 120
    who = authenticate(
        [oidc], f"Bearer {token(auth_time=signed_in, acr='urn:jitgate:mfa', amr=['pwd', 'otp'])}"
    )
    assert who.auth_time == datetime.fromtimestamp(signed_in, UTC)
    assert who.acr == "urn:jitgate:mfa"
    assert who.amr == ("pwd", "otp")
    plain = authenticate([oidc], f"Bearer {token()}")
    assert (plain.auth_time, plain.acr, plain.amr) == (None, None, ())


def test_malformed_sign_in_claims_prove_nothing(oidc: OidcAuthenticator) -> None:
    who = authenticate([oidc], f"Bearer {token(auth_time='yesterday', acr=['mfa'], amr='otp')}")
    assert (who.auth_time, who.acr, who.amr) == (None, None, ())
    escape = token(acr="mfa\x1b[0m", amr=["otp", 7])
    odd = authenticate([oidc], f"Bearer {escape}")
    assert (odd.acr, odd.amr) == (None, ())


def test_a_sign_in_after_the_token_was_issued_is_refused(oidc: OidcAuthenticator) -> None:
    with pytest.raises(Unauthenticated, match="auth_time"):
        authenticate([oidc], f"Bearer {token(auth_time=int(time.time()) + 3600)}")
