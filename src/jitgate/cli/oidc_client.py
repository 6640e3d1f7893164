"""The command line as an OpenID client: the provider's discovery document, its token and
revocation endpoints, and the checks an ID token passes before it is stored.

The CLI is a public client (RFC 8252: no secret). HTTP is the standard library's, and PyJWT is
loaded only to check a token: a command whose stored sign-in needs refreshing, ``jitgate ssh``
included, loads this module on its way and should not pay for more.

Every endpoint must be ``https``, or ``http`` on a loopback address (a provider on the same
machine): the ID token is a bearer credential and must not cross a network in the clear.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from jitgate import errors
from jitgate.domain.oauth import secure_transport

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA")
"""Asymmetric only: with an HMAC algorithm, anyone holding the (public) JWKS could forge tokens."""
LEEWAY_SECONDS = 30
TIMEOUT_SECONDS = 15.0


class TokenError(Exception):
    """An OAuth error answer (RFC 6749 §5.2): ``error`` is its code, e.g. ``invalid_grant``."""

    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description


def checked_endpoint(url: object, what: str) -> str:
    """``url`` if it is https, or http on a loopback address; else ``InvalidInput``."""
    if not isinstance(url, str):
        raise errors.InvalidInput(f"the identity provider gave no {what}")
    parts = urllib.parse.urlsplit(url)
    if not secure_transport(url) or parts.username or parts.password:
        raise errors.InvalidInput(f"the identity provider's {what} {url[:100]!r} is not https")
    return url


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What discovery says about the provider (the parts the CLI uses)."""

    issuer: str
    token_endpoint: str
    jwks_uri: str
    authorization_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    revocation_endpoint: str | None = None

    @classmethod
    def from_document(cls, issuer: str, document: Any) -> ProviderMetadata:
        """Metadata from a discovery document, which must name ``issuer`` exactly (OIDC Discovery §4.3)."""
        if not isinstance(document, dict):
            raise errors.InvalidInput("the identity provider's discovery document is not a JSON object")
        if document.get("issuer") != issuer:
            found = str(document.get("issuer"))[:100]
            raise errors.InvalidInput(f"the identity provider calls itself {found!r}, not {issuer!r}")

        def optional(name: str) -> str | None:
            value = document.get(name)
            return None if value is None else checked_endpoint(value, name)

        return cls(
            issuer=issuer,
            token_endpoint=checked_endpoint(document.get("token_endpoint"), "token_endpoint"),
            jwks_uri=checked_endpoint(document.get("jwks_uri"), "jwks_uri"),
            authorization_endpoint=optional("authorization_endpoint"),
            device_authorization_endpoint=optional("device_authorization_endpoint"),
            revocation_endpoint=optional("revocation_endpoint"),
        )

    @classmethod
    def discover(cls, issuer: str) -> ProviderMetadata:
        checked_endpoint(issuer, "issuer")
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        return cls.from_document(issuer, get_json(url))


def get_json(url: str) -> Any:
    checked_endpoint(url, "address")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - checked
    return _exchange(request, url)


def post_form(url: str, form: dict[str, str]) -> Any:
    """POST ``form`` to an endpoint of the provider; an OAuth error answer raises ``TokenError``."""
    checked_endpoint(url, "address")
    body = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(  # noqa: S310 - checked above
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
    )
    return _exchange(request, url)


def _exchange(request: urllib.request.Request, url: str) -> Any:
    where = urllib.parse.urlsplit(url).netloc
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - checked_endpoint
            data = response.read(1024 * 1024)
    except urllib.error.HTTPError as exc:
        answer = _json_or_none(exc.read(64 * 1024))
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            raise TokenError(answer["error"][:64], str(answer.get("error_description") or "")[:200]) from None
        raise errors.StorageUnavailable(f"the identity provider at {where} answered {exc.code}") from None
    except (OSError, urllib.error.URLError):
        raise errors.StorageUnavailable(f"cannot reach the identity provider at {where}") from None
    answer = _json_or_none(data)
    if answer is None:
        raise errors.StorageUnavailable(f"the identity provider at {where} did not answer JSON")
    return answer


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return None


def id_token_of(answer: Any) -> str:
    """The ID token of a token endpoint's answer."""
    token = answer.get("id_token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise errors.Unauthenticated("the identity provider's answer holds no ID token")
    return token


def refresh_token_of(answer: Any) -> str | None:
    token = answer.get("refresh_token") if isinstance(answer, dict) else None
    return token if isinstance(token, str) and token else None


def checked_id_token(
    id_token: str,
    *,
    issuer: str,
    client_id: str,
    jwks_uri: str,
    nonce: str | None = None,
    subject: str | None = None,
) -> dict[str, Any]:
    """The claims of ``id_token`` once its signature (by a key in the provider's JWKS, asymmetric),
    issuer, audience (this client), expiry and, when given, ``nonce`` and ``subject`` hold.

    ``subject`` is for a refreshed token, which must name the same person (OIDC Core §12.2).
    """
    import jwt  # here: PyJWT and cryptography cost more than the rest of a refresh-free call

    try:
        key = jwt.PyJWKClient(jwks_uri, cache_keys=False, timeout=int(TIMEOUT_SECONDS))
        signing = key.get_signing_key_from_jwt(id_token)
        if signing.algorithm_name not in ALGORITHMS:
            raise errors.Unauthenticated(f"the ID token is signed with {signing.algorithm_name}; refused")
        claims: dict[str, Any] = jwt.decode(
            id_token,
            signing.key,
            algorithms=[signing.algorithm_name],
            audience=client_id,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWKClientConnectionError:
        raise errors.StorageUnavailable("cannot fetch the identity provider's keys") from None
    except (jwt.PyJWTError, TypeError, ValueError) as exc:
        raise errors.Unauthenticated(
            f"the identity provider's ID token is not valid: {_first_line(exc)}"
        ) from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise errors.Unauthenticated("the ID token was issued to another party (azp)")
    if nonce is not None and claims.get("nonce") != nonce:
        raise errors.Unauthenticated("the ID token's nonce is not this sign-in's; refused")
    if subject is not None and claims.get("sub") != subject:
        raise errors.Unauthenticated("the refreshed ID token names someone else; refused")
    if not isinstance(claims.get("exp"), int):
        raise errors.Unauthenticated("the ID token's exp is not a number")
    return claims


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
