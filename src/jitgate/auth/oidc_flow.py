"""Single sign-on for the console: the OpenID Connect authorization code flow with PKCE.

``start`` sends the browser to the provider with a fresh ``state`` (kept only as its SHA-256),
``nonce`` and PKCE verifier (S256), kept server-side in ``oidc_sign_ins`` for ten minutes and
bound to the browser that started (the SHA-256 of its pre-session cookie). ``finish`` takes that
row once, refuses another browser's (login CSRF, code injection), exchanges the code at the token
endpoint with the verifier, and checks the ID token as OpenID Connect Core 3.1.3.7 says: the
provider's signature (asymmetric algorithms only), ``iss``, ``aud`` (our client id), ``azp`` when
present, ``exp`` and ``iat`` against the broker's clock, the ``nonce``, and for a step-up the
``auth_time`` within ``max_age`` and an ``acr`` among the asked ``acr_values``.

Claims become an identity as bearer tokens do (``auth/oidc.py: ClaimMapping``), carrying the
sign-in's ``auth_time``, ``acr`` and ``amr``. ``recheck`` asks the provider again with the refresh
token: a refusal ends the console session, a success brings the groups up to date.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt

from jitgate.auth.jwks import ALGORITHMS
from jitgate.auth.oidc import ClaimMapping
from jitgate.auth.oidc_provider import OpenIdProvider
from jitgate.clock import Clock
from jitgate.domain.identity import Identity
from jitgate.domain.oauth import code_challenge, new_code_verifier
from jitgate.errors import IdentityProviderUnavailable, Unauthenticated
from jitgate.store import oidc_sign_ins
from jitgate.store.db import Database
from jitgate.store.oidc_sign_ins import PendingSignIn

SIGN_IN_LIFETIME = timedelta(minutes=10)
MAX_UNDER_WAY = 10_000
"""Sign-ins under way at once; anyone may start one, so their rows are bounded. A new sign-in
beyond it pushes out the oldest rather than being refused: refusing would let one outsider lock
everybody out of single sign-on for ten minutes by starting 10,000 in a loop, where pushing out
makes them start that many within the minute someone spends at the provider, and again for the
next. No quota per address: behind the TLS proxy the broker is deployed with, everyone has one."""
LEEWAY = timedelta(seconds=30)
"""Clock skew allowed between provider and broker, for ``exp``, ``iat`` and ``auth_time``."""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def authorize_url(
    endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    scopes: str,
    state: str,
    nonce: str,
    challenge: str,
    max_age: int | None = None,
    acr_values: tuple[str, ...] = (),
    prompt_login: bool = False,
) -> str:
    """The provider's authorization URL for one sign-in (an endpoint with a query of its own keeps it).

    ``prompt`` holds ``login`` for a step-up, and ``consent`` when ``offline_access`` is asked for
    (OpenID Connect Core section 11: providers drop it otherwise, and give no refresh token).
    """
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scopes,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if max_age is not None:
        params["max_age"] = str(max_age)
    if acr_values:
        params["acr_values"] = " ".join(acr_values)
    prompt = [
        word
        for word, wanted in (("login", prompt_login), ("consent", "offline_access" in scopes.split()))
        if wanted
    ]
    if prompt:
        params["prompt"] = " ".join(prompt)
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"


@dataclass(frozen=True, slots=True)
class CompletedSignIn:
    identity: Identity
    oidc: dict[str, Any]
    """What the console session keeps: the ID token (logout hint), the refresh token if any,
    the subject, and when to ask the provider again."""
    return_to: str
    step_up: bool


class OidcWebSignIn:
    """The console's sign-in at one provider, with its sign-ins under way kept in the database."""

    def __init__(
        self,
        provider: OpenIdProvider,
        db: Database,
        clock: Clock,
        claims: ClaimMapping,
        *,
        redirect_uri: str,
        scopes: str,
        recheck: timedelta,
    ) -> None:
        self.provider = provider
        self._db = db
        self._clock = clock
        self._claims = claims
        self.redirect_uri = redirect_uri
        self._scopes = scopes
        self._recheck = recheck

    def start(
        self,
        *,
        browser: str,
        return_to: str,
        max_age: int | None = None,
        acr_values: tuple[str, ...] = (),
    ) -> str:
        """Remember a new sign-in for the browser holding ``browser`` and return where to send it.
        It is never refused for the number under way: the oldest beyond ``MAX_UNDER_WAY`` give way."""
        endpoint = self.provider.metadata().authorization_endpoint
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), new_code_verifier()
        now = self._clock.now()
        pending = PendingSignIn(
            state_hash=digest(state),
            nonce=nonce,
            code_verifier=verifier,
            return_to=return_to,
            max_age_s=max_age,
            acr_values=acr_values,
            browser_hash=digest(browser),
            created_at=now,
            expires_at=now + SIGN_IN_LIFETIME,
        )
        with self._db.write() as conn:
            oidc_sign_ins.delete_ended_sign_ins(conn, now)
            oidc_sign_ins.delete_oldest_sign_ins(conn, keep=MAX_UNDER_WAY - 1)
            oidc_sign_ins.insert_sign_in(conn, pending)
        return authorize_url(
            endpoint,
            client_id=self.provider.client_id,
            redirect_uri=self.redirect_uri,
            scopes=self._scopes,
            state=state,
            nonce=nonce,
            challenge=code_challenge(verifier),
            max_age=max_age,
            acr_values=acr_values,
            prompt_login=max_age is not None or bool(acr_values),
        )

    def take(self, state: str) -> PendingSignIn | None:
        """The sign-in under way with this ``state``, removed: it can be completed (or failed) once."""
        with self._db.write() as conn:
            return oidc_sign_ins.take_sign_in(conn, digest(state))

    def finish(self, pending: PendingSignIn | None, *, code: str, browser: str | None) -> CompletedSignIn:
        """Complete a taken sign-in with the provider's ``code``, in the browser that started it."""
        now = self._clock.now()
        if pending is None or now >= pending.expires_at:
            raise Unauthenticated("this sign-in is unknown, used or expired; start again")
        if not browser or not hmac.compare_digest(digest(browser), pending.browser_hash):
            raise Unauthenticated("this sign-in was started in another browser; start again")
        tokens = self.provider.token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": pending.code_verifier,
            }
        )
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise Unauthenticated("the identity provider sent no ID token")
        claims = self.verified_claims(id_token, now)
        if not hmac.compare_digest(str(claims.get("nonce", "")), pending.nonce):
            raise Unauthenticated("the ID token's nonce is not this sign-in's")
        check_sign_in_strength(claims, now, max_age=pending.max_age_s, acr_values=pending.acr_values)
        identity = self._claims.identity(claims, expires_at=None)
        refresh = tokens.get("refresh_token")
        state = {
            "sub": claims["sub"],
            "id_token": id_token,
            "refresh_token": refresh if isinstance(refresh, str) else None,
            "recheck_at": (now + self._recheck).isoformat(),
        }
        step_up = pending.max_age_s is not None or bool(pending.acr_values)
        return CompletedSignIn(identity, state, pending.return_to, step_up)

    def verified_claims(self, id_token: str, now: datetime) -> dict[str, Any]:
        """The claims of an ID token from our provider for our client, checked against ``now``."""
        try:
            key = self.provider.signing_key(id_token)
            if key.algorithm_name not in ALGORITHMS:
                raise Unauthenticated(
                    f"the ID token is signed with {key.algorithm_name}, which is not accepted"
                )
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=self.provider.client_id,
                issuer=self.provider.issuer,
                # Times are checked below against the broker's clock, not the library's.
                options={
                    "require": ["exp", "iat", "iss", "aud", "sub"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except (IdentityProviderUnavailable, Unauthenticated):
            raise
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise Unauthenticated(f"the ID token is refused: {reason}") from None
        check_token_times(claims, now)
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if azp is not None and azp != self.provider.client_id:
            raise Unauthenticated("the ID token was issued to another client (azp)")
        if len(audiences) > 1 and azp is None:
            raise Unauthenticated("the ID token has several audiences and no azp")
        return claims

    def recheck(self, identity: Identity, state: dict[str, Any]) -> tuple[Identity, dict[str, Any]]:
        """Ask the provider again with the refresh token: the identity with today's groups and the new
        state, or ``Unauthenticated`` (revoked, user gone, another subject) to end the session."""
        now = self._clock.now()
        refresh = state.get("refresh_token")
        if not isinstance(refresh, str):
            return identity, state
        tokens = self.provider.token({"grant_type": "refresh_token", "refresh_token": refresh})
        new_state = {
            **state,
            "refresh_token": tokens.get("refresh_token")
            if isinstance(tokens.get("refresh_token"), str)
            else refresh,
            "recheck_at": (now + self._recheck).isoformat(),
        }
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            return identity, new_state
        claims = self.verified_claims(id_token, now)
        if claims["sub"] != state.get("sub"):
            raise Unauthenticated("the identity provider answered for another subject")
        fresh = self._claims.identity(claims, expires_at=identity.expires_at)
        # A refresh proves no new sign-in: how and when the person signed in stays as it was.
        updated = Identity(
            name=identity.name,
            groups=fresh.groups,
            admin=fresh.admin,
            kind=identity.kind,
            source=identity.source,
            display_name=fresh.display_name,
            expires_at=identity.expires_at,
            auth_time=identity.auth_time,
            acr=identity.acr,
            amr=identity.amr,
        )
        new_state["id_token"] = id_token
        return updated, new_state

    def end_session_url(self, state: dict[str, Any] | None, post_logout_redirect_uri: str) -> str | None:
        """Where to send the browser to sign out at the provider too, if it says how (RP-initiated logout)."""
        if state is None:
            return None
        try:
            endpoint = self.provider.metadata().end_session_endpoint
        except IdentityProviderUnavailable:
            return None
        if endpoint is None:
            return None
        params = {"client_id": self.provider.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if isinstance(state.get("id_token"), str):
            params["id_token_hint"] = state["id_token"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"


def _instant(claims: dict[str, Any], name: str) -> datetime:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthenticated(f"the ID token's {name} is not a time")
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (OverflowError, OSError, ValueError):
        raise Unauthenticated(f"the ID token's {name} is not a time") from None


def check_token_times(claims: dict[str, Any], now: datetime) -> None:
    """``exp`` not passed and ``iat`` (and ``nbf`` if any) not ahead, against ``now``, within ``LEEWAY``."""
    if now >= _instant(claims, "exp") + LEEWAY:
        raise Unauthenticated("the ID token has expired")
    if _instant(claims, "iat") > now + LEEWAY:
        raise Unauthenticated("the ID token was issued in the future")
    if "nbf" in claims and _instant(claims, "nbf") > now + LEEWAY:
        raise Unauthenticated("the ID token is not valid yet (nbf)")


def check_sign_in_strength(
    claims: dict[str, Any], now: datetime, *, max_age: int | None, acr_values: tuple[str, ...]
) -> None:
    """What a step-up asked for, checked on what came back (the provider may ignore the request)."""
    if max_age is not None:
        if "auth_time" not in claims:
            raise Unauthenticated("the ID token has no auth_time although max_age was asked")
        if now - _instant(claims, "auth_time") > timedelta(seconds=max_age) + LEEWAY:
            raise Unauthenticated(
                "the identity provider did not ask you to sign in again (auth_time too old)"
            )
    if acr_values and claims.get("acr") not in acr_values:
        raise Unauthenticated(
            f"the identity provider's sign-in was not of the asked strength ({' or '.join(acr_values)})"
        )
