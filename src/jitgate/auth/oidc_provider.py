"""The OpenID provider as the console's sign-in sees it: discovery, its keys, its token endpoint.

Discovery reads ``{issuer}/.well-known/openid-configuration`` and takes it only if the document
names exactly the configured issuer (OpenID Connect Discovery 1.0, section 4.3): a document
that names another would let its keys speak for our issuer. The document is cached; a provider
that cannot be reached, or answers with something else, is ``IdentityProviderUnavailable`` with
one line, and nothing is cached then. Its endpoints must be ``https`` (``http`` only on loopback),
as the issuer must.

The broker is a confidential client and authenticates at the token endpoint with HTTP Basic
(``client_secret_basic``: id and secret form-encoded first, RFC 6749 section 2.3.1); a client
without a secret sends only its id, and PKCE protects the code.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import jwt

from jitgate.clock import Clock
from jitgate.domain.oauth import secure_transport
from jitgate.errors import IdentityProviderUnavailable, Unauthenticated

DISCOVERY_TTL = timedelta(hours=1)
HTTP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None


def check_issuer_url(issuer: str) -> None:
    """An issuer must be ``https``, except on loopback (a provider on the same machine)."""
    if not secure_transport(issuer):
        raise ValueError(f"JITGATE_OIDC_ISSUER {issuer!r} must be an https URL (http only on loopback)")


def _endpoint(document: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """An endpoint of the document, held to the issuer's rule: the client secret, the codes and the
    keys must not travel in the clear, nor to an address that carries credentials of its own."""
    value = document.get(name)
    if value is None and not required:
        return None
    try:
        if not isinstance(value, str) or urlsplit(value).username is not None:
            raise ValueError(name)
        check_issuer_url(value)
    except ValueError:
        raise IdentityProviderUnavailable(
            f"the identity provider's discovery document has no usable {name}"
        ) from None
    return value


class OpenIdProvider:
    """One configured provider: its metadata (cached), its signing keys, its token endpoint."""

    def __init__(
        self,
        issuer: str,
        *,
        client_id: str,
        client_secret: str | None,
        clock: Clock,
        jwks_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        check_issuer_url(issuer)
        self.issuer = issuer
        self.client_id = client_id
        self._secret = client_secret
        self._clock = clock
        self._jwks_url = jwks_url
        self._http = httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False, transport=transport)
        self._lock = threading.Lock()
        self._metadata: ProviderMetadata | None = None
        self._fetched_at: datetime | None = None
        self._jwks: jwt.PyJWKClient | None = None

    def metadata(self) -> ProviderMetadata:
        with self._lock:
            now = self._clock.now()
            if self._metadata is None or self._fetched_at is None or now - self._fetched_at >= DISCOVERY_TTL:
                self._metadata = self._discover()
                self._fetched_at = now
                self._jwks = jwt.PyJWKClient(
                    self._jwks_url or self._metadata.jwks_uri, cache_keys=True, lifespan=300, timeout=5
                )
            return self._metadata

    def _discover(self) -> ProviderMetadata:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = self._http.get(url)
        except httpx.HTTPError as exc:
            raise IdentityProviderUnavailable(
                f"the identity provider at {self.issuer} cannot be reached ({type(exc).__name__})"
            ) from None
        if response.status_code != 200:
            raise IdentityProviderUnavailable(
                f"the identity provider's discovery document answered {response.status_code}"
            )
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise IdentityProviderUnavailable("the identity provider's discovery document is not JSON")
        if document.get("issuer") != self.issuer:
            raise IdentityProviderUnavailable(
                "the identity provider's discovery document names another issuer than JITGATE_OIDC_ISSUER"
            )
        return ProviderMetadata(
            issuer=self.issuer,
            authorization_endpoint=str(_endpoint(document, "authorization_endpoint")),
            token_endpoint=str(_endpoint(document, "token_endpoint")),
            jwks_uri=str(_endpoint(document, "jwks_uri")),
            end_session_endpoint=_endpoint(document, "end_session_endpoint", required=False),
        )

    def signing_key(self, token: str) -> jwt.PyJWK:
        self.metadata()
        jwks = self._jwks
        if jwks is None:
            raise IdentityProviderUnavailable("the identity provider's keys are not known yet")
        try:
            return jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise IdentityProviderUnavailable("cannot fetch the identity provider's keys") from None

    def token(self, form: dict[str, str]) -> dict[str, Any]:
        """POST ``form`` to the token endpoint as this client; its JSON answer, or why not in one line.

        A refusal (400/401: a used or revoked code or refresh token) is ``Unauthenticated``; an
        unreachable or broken provider is ``IdentityProviderUnavailable``.
        """
        endpoint = self.metadata().token_endpoint
        body = dict(form)
        headers = {"Accept": "application/json"}
        if self._secret is None:
            body["client_id"] = self.client_id
        else:
            pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            response = self._http.post(endpoint, data=body, headers=headers)
        except httpx.HTTPError as exc:
            raise IdentityProviderUnavailable(
                f"the identity provider's token endpoint cannot be reached ({type(exc).__name__})"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code in (400, 401) and isinstance(answer, dict):
            code = str(answer.get("error", "invalid_request"))
            raise Unauthenticated(f"the identity provider refused: {_printable(code)}")
        if response.status_code != 200 or not isinstance(answer, dict):
            raise IdentityProviderUnavailable(
                f"the identity provider's token endpoint answered {response.status_code}"
            )
        return answer

    def close(self) -> None:
        self._http.close()


def _printable(text: str) -> str:
    kept = "".join(c for c in text if c.isascii() and (c.isalnum() or c in "_-. "))
    return kept[:80] or "an error"
