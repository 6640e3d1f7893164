"""The ``ssh`` credential provider: an OpenSSH user certificate minted for one connection.

Nothing is created at the target, so there is nothing to take back there (``revocable`` is
False): a certificate lives only minutes and dies at its ``valid_before``. A grant revoked
earlier is enforced through the KRL the broker serves from its credentials table (``krl``).
Everything the certificate says comes from the grant and the role, never from the request: the
request contributes only the public key, which of the role's logins it wants, and, when the role
asks for it, the caller's address.

The principals are ``LOGIN@TARGET`` for the one target the certificate is minted for (see
``domain/sshnames``), never the bare login: a target's sshd lists in its
``AuthorizedPrincipalsFile`` only the principals bound to itself, so a certificate for one host
opens no other host that offers the same login.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from jitgate.clock import Clock, SystemClock, utc
from jitgate.domain import sshnames
from jitgate.errors import InvalidInput, JitgateError, PolicyDenied
from jitgate.policy.model import Target
from jitgate.providers.base import Health, Issued, IssueRequest, ProviderContext
from jitgate.providers.ssh.ca import CaKind, CaStore
from jitgate.providers.ssh.certs import CertSpec, CertType, format_cert_line, sign_certificate
from jitgate.providers.ssh.krl import build_krl
from jitgate.providers.ssh.wire import ParsedPublicKey, parse_public_key

CLOCK_SKEW = timedelta(seconds=30)
"""Certificates start this long before ``now`` so a target whose clock lags a little accepts them."""
CALLER = "caller"
"""The ``ssh.source_address`` entry that stands for the address the request came from."""
_PARAMS = frozenset({"public_key", "source_address", "login"})
_UNSAFE = re.compile(r"[^A-Za-z0-9_.@+-]")


def _kid(value: str) -> str:
    # Key ids land in sshd's log: percent-encode anything that could split or forge a field.
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), value)


def _second(value: datetime) -> datetime:
    """``value`` as the certificate encodes it: whole seconds, UTC."""
    return datetime.fromtimestamp(int(value.timestamp()), UTC)


def _random_serial() -> int:
    serial = 0
    while serial == 0:  # serial 0 cannot be named in a KRL
        serial = secrets.randbits(64)
    return serial


def _serial(handle: str) -> int:
    if not handle.isdigit() or not 0 < int(handle) < 2**64:
        raise InvalidInput("an ssh credential handle is a certificate serial (1..2**64-1)")
    return int(handle)


class SshCertificateProvider:
    """Mints OpenSSH user certificates (and, for admins, host certificates) from the broker's CA."""

    kind = "ssh"
    revocable = False

    def __init__(self, store: CaStore, clock: Clock | None = None) -> None:
        self._store = store
        self._clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"SshCertificateProvider({self._store!r})"

    @property
    def ca_store(self) -> CaStore:
        return self._store

    def new_handle(self, request: IssueRequest) -> str:
        """A random non-zero 64-bit serial, as a decimal string."""
        return str(_random_serial())

    def issue(self, request: IssueRequest, handle: str) -> Issued:
        """Mint a user certificate for ``params["public_key"]`` under the active grant."""
        serial = _serial(handle)
        grant, role, target, now = request.grant, request.role, request.target, utc(request.now)
        if role.ssh is None:
            raise PolicyDenied(f"role {role.name} gives no ssh access")
        if target.kind != "ssh":
            raise InvalidInput(f"target {target.name} is not an ssh target")
        if grant.role != role.name or target.name not in grant.targets:
            raise PolicyDenied(f"grant {grant.id} does not cover target {target.name}")
        if not grant.is_active_at(now):
            raise PolicyDenied(f"grant {grant.id} is not active")
        unknown = sorted(str(name) for name in request.params if name not in _PARAMS)
        if unknown:
            raise InvalidInput(
                f"unexpected parameter {unknown[0][:40]!r}: what a certificate says comes from the role"
            )
        public_key = self._public_key(request.params.get("public_key"))
        principals = self._principals(role.ssh.logins, request.params.get("login"), target.name)
        key_id = ":".join(
            (
                "jitgate",
                f"user={_kid(request.identity.name)}",
                f"grant={_kid(grant.id)}",
                f"request={_kid(grant.request_id)}",
                f"target={_kid(target.name)}",
                f"role={_kid(role.name)}",
            )
        )
        options: dict[str, str] = {}
        if role.ssh.force_command is not None:
            options["force-command"] = role.ssh.force_command
        if role.ssh.source_address:
            options["source-address"] = self._source_address(
                role.ssh.source_address, request.params.get("source_address")
            )
        spec = CertSpec(
            cert_type=CertType.USER,
            key_id=key_id,
            serial=serial,
            principals=principals,
            valid_after=now - CLOCK_SKEW,
            valid_before=min(utc(grant.expires_at), now + role.ssh.cert_ttl),
            critical_options=options,
            extensions=role.ssh.extensions,
        )
        return self._sign(CaKind.USER, public_key, spec, now)

    def revoke(self, target: Target, handle: str) -> None:
        """Nothing to do at the target: the certificate expires by itself and the KRL covers the rest."""

    def check(self, target: Target) -> Health:
        try:
            signer = self._store.signer(CaKind.USER, self._clock.now())
        except JitgateError as exc:
            return Health(ok=False, detail=str(exc))
        return Health(ok=True, detail=f"user CA {signer.fingerprint} ready")

    def host_certificate(
        self,
        public_key_line: str,
        principals: Sequence[str],
        validity: timedelta,
        now: datetime | None = None,
    ) -> Issued:
        """A host certificate from the host CA for sshd's ``HostCertificate``.

        ``principals`` are the names and addresses clients use for the host. The certificate line
        is in ``secret["certificate"]`` (it is not secret, but that is where callers look).
        """
        if validity <= timedelta(0):
            raise InvalidInput("a host certificate needs a positive validity")
        when = utc(now) if now is not None else self._clock.now()
        public_key = self._public_key(public_key_line)
        names = tuple(principals)
        spec = CertSpec(
            cert_type=CertType.HOST,
            key_id=f"jitgate:host={_kid(names[0]) if names else ''}",
            serial=_random_serial(),
            principals=names,
            valid_after=when - CLOCK_SKEW,
            valid_before=when + validity,
        )
        return self._sign(CaKind.HOST, public_key, spec, when)

    def krl(self, revoked: Iterable[tuple[str, int]], version: int, now: datetime) -> bytes:
        """A KRL for ``(ca_fingerprint, serial)`` pairs as kept in the issuance records.

        Serials of CAs no longer in the store are dropped: nothing trusts those CAs any more.
        """
        by_ca: dict[bytes, list[int]] = {}
        for ca_fingerprint, serial in revoked:
            key = self._store.key_by_fingerprint(ca_fingerprint)
            if key is not None:
                by_ca.setdefault(key.public_blob, []).append(int(serial))
        return build_krl(by_ca, version, utc(now), comment="jitgate")

    def _public_key(self, line: Any) -> ParsedPublicKey:
        if not isinstance(line, str):
            raise InvalidInput("public_key must be an OpenSSH public key line")
        public_key = parse_public_key(line)
        if any(public_key.blob == key.public_blob for key in self._store.all_keys()):
            raise InvalidInput("refusing to certify one of the broker's own CA keys")
        return public_key

    @staticmethod
    def _principals(logins: tuple[str, ...], wanted: Any, target: str) -> tuple[str, ...]:
        """The role's logins, or only the one asked for (least privilege), bound to ``target``."""
        if wanted is not None:
            if not isinstance(wanted, str) or wanted not in logins:
                shown = wanted[:40] if isinstance(wanted, str) else type(wanted).__name__
                raise PolicyDenied(f"login {shown!r} is not one of the role's logins ({', '.join(logins)})")
            logins = (wanted,)
        try:
            return tuple(sshnames.principal(login, target) for login in logins)
        except ValueError as exc:  # a policy built around the loader; refuse rather than mint
            raise InvalidInput(str(exc)) from None

    @staticmethod
    def _source_address(allowed: tuple[str, ...], caller: Any) -> str:
        entries: list[str] = []
        for entry in allowed:
            if entry != CALLER:
                entries.append(entry)
                continue
            if not isinstance(caller, str):
                raise InvalidInput("this role binds certificates to the caller's address, which is unknown")
            try:
                entries.append(str(ipaddress.ip_address(caller)))
            except ValueError:
                raise InvalidInput("the caller's address is not an IP address") from None
        return ",".join(dict.fromkeys(entries))

    def _sign(self, kind: CaKind, public_key: ParsedPublicKey, spec: CertSpec, now: datetime) -> Issued:
        signer = self._store.signer(kind, now)
        cert = sign_certificate(signer, public_key, spec)
        valid_after, valid_before = _second(spec.valid_after), _second(spec.valid_before)
        record: dict[str, Any] = {
            "serial": str(spec.serial),
            "key_id": spec.key_id,
            "type": spec.cert_type.value,  # not "cert_type": the audit log refuses "cert" keys
            "fingerprint": public_key.fingerprint,
            "key_type": public_key.key_type,
            "principals": list(spec.principals),
            "valid_after": valid_after.isoformat(),
            "valid_before": valid_before.isoformat(),
            "critical_options": dict(spec.critical_options),
            "extensions": list(spec.extensions),
            "ca_fingerprint": signer.fingerprint,
        }
        return Issued(
            handle=str(spec.serial),
            valid_after=valid_after,
            valid_before=valid_before,
            record=record,
            secret={"certificate": format_cert_line(cert, f"jitgate-{spec.serial}")},
        )


def create_provider(ctx: ProviderContext) -> SshCertificateProvider:
    """Entry point: the CA lives in ``DATA_DIR/ca``; ``options["ca_passphrase"]`` encrypts it."""
    passphrase = ctx.options.get("ca_passphrase")
    if passphrase is not None and hasattr(passphrase, "get_secret_value"):
        passphrase = passphrase.get_secret_value()
    if passphrase is not None and not isinstance(passphrase, str | bytes):
        raise InvalidInput("ca_passphrase must be a string")
    return SshCertificateProvider(CaStore(ctx.data_dir / "ca", passphrase), ctx.clock)
