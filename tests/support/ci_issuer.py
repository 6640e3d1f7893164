"""A CI platform's token issuer for tests: a real HTTP server with an OpenID discovery document and
a JWKS, and job tokens shaped like the platforms' own (GitHub Actions, Kubernetes service accounts).

The discovery document names the server's own address as the issuer and ``/jwks`` (not the
well-known path) as its keys, as real issuers do, so a broker that finds the keys by discovery is
tested as well as one given ``jwks_url``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from support.keyserver import KeyServer, jwks_of

DISCOVERY = "/.well-known/openid-configuration"


@dataclass
class CiIssuer:
    server: KeyServer
    key: rsa.RSAPrivateKey

    @property
    def issuer(self) -> str:
        return self.server.url

    @property
    def jwks_url(self) -> str:
        return f"{self.server.url}/jwks"

    def fetches(self) -> int:
        """How many times anyone fetched the keys."""
        return self.server.asked.count("/jwks")

    def sign(self, claims: dict[str, Any], *, key: Any = None, alg: str = "RS256", kid: str = "k1") -> str:
        """``claims`` signed (by the issuer's key unless told otherwise); a None value drops the claim."""
        kept = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(kept, key if key is not None else self.key, algorithm=alg, headers={"kid": kid})

    def github_job(
        self,
        *,
        audience: str = "jitgate",
        repository: str = "acme/orders",
        ref: str = "refs/heads/main",
        environment: str | None = "production",
        lifetime: int = 300,
        **overrides: Any,
    ) -> dict[str, Any]:
        """The claims of a GitHub Actions job token for a workflow run of ``repository`` at ``ref``."""
        now = int(time.time())
        owner = repository.split("/", maxsplit=1)[0]
        where = f"environment:{environment}" if environment else f"ref:{ref}"
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "sub": f"repo:{repository}:{where}",
            "aud": audience,
            "ref": ref,
            "ref_type": "branch" if ref.startswith("refs/heads/") else "tag",
            "sha": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
            "repository": repository,
            "repository_owner": owner,
            "repository_id": "74",
            "repository_owner_id": "65",
            "run_id": "1234567",
            "run_number": "42",
            "run_attempt": "1",
            "actor": "octocat",
            "workflow": "deploy",
            "event_name": "push",
            "environment": environment,
            "job_workflow_ref": f"{repository}/.github/workflows/deploy.yml@{ref}",
            "iss": self.issuer,
            "nbf": now - 5,
            "iat": now,
            "exp": now + lifetime,
        }
        claims.update(overrides)
        return claims

    def service_account(
        self, namespace: str, name: str, *, audience: str = "jitgate", lifetime: int = 3600
    ) -> dict[str, Any]:
        """The claims of a Kubernetes projected service-account token for pod ``NAME-…`` in ``namespace``."""
        now = int(time.time())
        return {
            "aud": [audience],
            "exp": now + lifetime,
            "iat": now,
            "nbf": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": namespace,
                "node": {"name": "node-1", "uid": str(uuid.uuid4())},
                "pod": {"name": f"{name}-7c9d5", "uid": str(uuid.uuid4())},
                "serviceaccount": {"name": name, "uid": str(uuid.uuid4())},
            },
            "sub": f"system:serviceaccount:{namespace}:{name}",
        }


@contextmanager
def ci_issuer(key: rsa.RSAPrivateKey | None = None) -> Iterator[CiIssuer]:
    """An issuer serving discovery and its keys on a loopback port, for as long as the block runs."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with KeyServer({"/jwks": jwks_of(key)}) as server:
        server.files[DISCOVERY] = json.dumps(
            {
                "issuer": server.url,
                "jwks_uri": f"{server.url}/jwks",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        ).encode()
        yield CiIssuer(server, key)
