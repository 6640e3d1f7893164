"""The ssh provider's decisions: what a certificate may say comes from grant and role, never the request."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    SSHCertificate,
    SSHCertificateType,
    load_ssh_public_identity,
)
from pydantic import SecretStr

from jitgate.audit.canonical import check_no_secrets
from jitgate.clock import FrozenClock
from jitgate.domain.identity import Identity
from jitgate.domain.model import Grant, RequestState
from jitgate.errors import InvalidInput, JitgateError, PolicyDenied
from jitgate.policy.model import Role, SshAccess, Target, TargetSelector
from jitgate.providers.base import CredentialProvider, IssueRequest, ProviderContext
from jitgate.providers.ssh.ca import CaKind, CaStore
from jitgate.providers.ssh.krl import build_krl
from jitgate.providers.ssh.provider import CLOCK_SKEW, SshCertificateProvider, create_provider
from jitgate.providers.ssh.wire import parse_public_key

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TARGET = Target(name="web-1", kind="ssh", address="10.0.0.5")
KEY_LINE = (
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    .decode()
)


def make_role(**ssh: Any) -> Role:
    return Role(
        name="prod-shell",
        targets=TargetSelector(names=("web-1",)),
        ssh=SshAccess(**{"logins": ("deploy",), **ssh}),
        max_duration=timedelta(hours=4),
        requesters=("group:engineers",),
        approvers=("group:sre-leads",),
    )


GRANT = Grant(
    id="g1",
    request_id="r1",
    holder="alice",
    role="prod-shell",
    targets=("web-1",),
    starts_at=NOW - timedelta(minutes=5),
    expires_at=NOW + timedelta(hours=1),
    state=RequestState.ACTIVE,
)


def request(
    role: Role | None = None, grant: Grant = GRANT, target: Target = TARGET, **params: Any
) -> IssueRequest:
    return IssueRequest(
        grant=grant,
        role=role or make_role(),
        target=target,
        identity=Identity(name="alice", groups=frozenset({"engineers"})),
        now=NOW,
        params={"public_key": KEY_LINE, **params},
    )


@pytest.fixture
def provider(tmp_path: Path) -> SshCertificateProvider:
    return SshCertificateProvider(CaStore(tmp_path / "ca"), FrozenClock(NOW))


def issue(provider: SshCertificateProvider, req: IssueRequest) -> Any:
    issued = provider.issue(req, provider.new_handle(req))
    cert = load_ssh_public_identity(issued.secret["certificate"].encode())
    assert isinstance(cert, SSHCertificate)
    return issued, cert


def test_is_a_credential_provider(provider: SshCertificateProvider) -> None:
    assert isinstance(provider, CredentialProvider)
    assert (provider.kind, provider.revocable) == ("ssh", False)


def test_a_session_can_narrow_the_certificate_to_one_login(provider: SshCertificateProvider) -> None:
    role = make_role(logins=("deploy", "ops"))
    _, cert = issue(provider, request(role, login="ops"))
    assert cert.valid_principals == [b"ops@web-1"]
    with pytest.raises(PolicyDenied, match="login 'root' is not one of the role's logins"):
        issue(provider, request(role, login="root"))


def test_principals_name_only_the_target_the_certificate_is_minted_for(
    provider: SshCertificateProvider,
) -> None:
    grant = dataclasses.replace(GRANT, targets=("web-1", "web-2"))
    web_2 = Target(name="web-2", kind="ssh", address="10.0.0.6")
    _, cert = issue(provider, request(make_role(logins=("deploy", "ops")), grant=grant, target=web_2))
    assert cert.valid_principals == [b"deploy@web-2", b"ops@web-2"]
    assert cert.key_id.endswith(b":target=web-2:role=prod-shell")


def test_handles_are_random_nonzero_64_bit_serials(provider: SshCertificateProvider) -> None:
    handles = {provider.new_handle(request()) for _ in range(200)}
    assert len(handles) == 200
    assert all(h.isdigit() and 0 < int(h) < 2**64 for h in handles)


def test_certificate_says_what_grant_and_role_say(provider: SshCertificateProvider) -> None:
    role = make_role(logins=("deploy", "ops"), force_command="uptime", extensions=("permit-pty",))
    issued, cert = issue(provider, request(role))
    assert cert.type == SSHCertificateType.USER
    assert cert.serial == int(issued.handle)
    assert cert.valid_principals == [b"deploy@web-1", b"ops@web-1"]  # bound to this target only
    assert cert.key_id == b"jitgate:user=alice:grant=g1:request=r1:target=web-1:role=prod-shell"
    assert cert.valid_after == int((NOW - CLOCK_SKEW).timestamp())
    assert cert.valid_before == int((NOW + timedelta(minutes=5)).timestamp())
    assert cert.critical_options == {b"force-command": b"uptime"}
    assert cert.extensions == {b"permit-pty": b""}
    assert issued.valid_after == NOW - CLOCK_SKEW
    assert issued.valid_before == NOW + timedelta(minutes=5)
    signer = provider.ca_store.signer(CaKind.USER, NOW)
    assert issued.record == {
        "serial": issued.handle,
        "key_id": cert.key_id.decode(),
        "type": "user",
        "fingerprint": parse_public_key(KEY_LINE).fingerprint,
        "key_type": "ssh-ed25519",
        "principals": ["deploy@web-1", "ops@web-1"],
        "valid_after": (NOW - CLOCK_SKEW).isoformat(),
        "valid_before": (NOW + timedelta(minutes=5)).isoformat(),
        "critical_options": {"force-command": "uptime"},
        "extensions": ["permit-pty"],
        "ca_fingerprint": signer.fingerprint,
    }
    assert KEY_LINE.split()[1] not in str(issued.record)
    check_no_secrets(issued.record)  # the record goes into the audit log as it is


def test_default_extensions_are_permit_pty_only(provider: SshCertificateProvider) -> None:
    _, cert = issue(provider, request())
    assert cert.extensions == {b"permit-pty": b""}
    assert cert.critical_options == {}


def test_validity_never_outlives_the_grant(provider: SshCertificateProvider) -> None:
    grant = dataclasses.replace(GRANT, expires_at=NOW + timedelta(seconds=90, microseconds=700))
    issued, cert = issue(provider, request(grant=grant))
    assert cert.valid_before == int((NOW + timedelta(seconds=90)).timestamp())
    assert issued.valid_before <= grant.expires_at


def test_key_id_cannot_be_forged_through_names(provider: SshCertificateProvider) -> None:
    req = dataclasses.replace(request(), identity=Identity(name="mallory:grant=x\nfake"))
    _, cert = issue(provider, req)
    assert cert.key_id.startswith(b"jitgate:user=mallory%3Agrant%3Dx%0Afake:grant=g1:")


@pytest.mark.parametrize(
    ("grant", "reason"),
    [
        (dataclasses.replace(GRANT, expires_at=NOW), "not active"),
        (dataclasses.replace(GRANT, state=RequestState.REVOKED), "not active"),
        (dataclasses.replace(GRANT, state=RequestState.EXPIRED), "not active"),
        (dataclasses.replace(GRANT, starts_at=NOW + timedelta(minutes=1)), "not active"),
        (dataclasses.replace(GRANT, targets=("db-1",)), "does not cover"),
        (dataclasses.replace(GRANT, role="other"), "does not cover"),
    ],
)
def test_no_certificate_outside_an_active_grant_covering_the_target(
    provider: SshCertificateProvider, grant: Grant, reason: str
) -> None:
    req = request(grant=grant)
    with pytest.raises(PolicyDenied, match=reason):
        provider.issue(req, provider.new_handle(req))


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"principals": ["root"]}, "unexpected parameter 'principals'"),
        ({"extensions": ["permit-agent-forwarding"]}, "unexpected parameter"),
        ({"public_key": "ssh-dss AAAAB3NzaC1kc3M="}, "DSA"),
        ({"public_key": "not a key"}, "not supported"),
        ({"public_key": None}, "OpenSSH public key line"),
        ({"public_key": "ssh-ed25519 " + "A" * 100_000}, "longer than"),
    ],
)
def test_bad_requests_get_no_certificate(
    provider: SshCertificateProvider, params: dict[str, Any], reason: str
) -> None:
    req = request(**params)
    with pytest.raises(InvalidInput, match=reason) as info:
        provider.issue(req, provider.new_handle(req))
    assert "\n" not in str(info.value)


def test_refuses_to_certify_any_of_its_own_ca_keys(provider: SshCertificateProvider) -> None:
    for kind in CaKind:
        req = request(public_key=provider.ca_store.public_lines(kind, NOW)[0])
        with pytest.raises(InvalidInput, match="own CA keys"):
            provider.issue(req, provider.new_handle(req))


def test_refuses_a_role_without_ssh_or_a_foreign_target(provider: SshCertificateProvider) -> None:
    no_ssh = make_role().model_copy(update={"ssh": None})
    with pytest.raises(PolicyDenied, match="no ssh access"):
        provider.issue(request(no_ssh), "1")
    db = Target(name="web-1", kind="postgres", admin_dsn_env="DSN")
    with pytest.raises(InvalidInput, match="not an ssh target"):
        provider.issue(request(target=db), "1")
    with pytest.raises(InvalidInput, match="serial"):
        provider.issue(request(), "0")


def test_caller_address_stands_in_for_caller(provider: SshCertificateProvider) -> None:
    role = make_role(source_address=("10.0.0.0/8", "caller"))
    _, cert = issue(provider, request(role, source_address="192.0.2.7"))
    assert cert.critical_options == {b"source-address": b"10.0.0.0/8,192.0.2.7"}
    with pytest.raises(InvalidInput, match="caller's address"):
        provider.issue(request(role), "5")
    with pytest.raises(InvalidInput, match="not an IP address"):
        provider.issue(request(role, source_address="example.com"), "5")


def test_host_certificate(provider: SshCertificateProvider) -> None:
    issued = provider.host_certificate(KEY_LINE, ["web-1.example.com", "10.0.0.5"], timedelta(days=30))
    cert = load_ssh_public_identity(issued.secret["certificate"].encode())
    assert isinstance(cert, SSHCertificate)
    assert cert.type == SSHCertificateType.HOST
    assert cert.valid_principals == [b"web-1.example.com", b"10.0.0.5"]
    assert cert.valid_before == int((NOW + timedelta(days=30)).timestamp())
    host_ca = provider.ca_store.signer(CaKind.HOST, NOW)
    assert issued.record["ca_fingerprint"] == host_ca.fingerprint
    assert host_ca.fingerprint != provider.ca_store.signer(CaKind.USER, NOW).fingerprint
    with pytest.raises(InvalidInput, match="principal"):
        provider.host_certificate(KEY_LINE, [], timedelta(days=1))
    with pytest.raises(InvalidInput, match="positive"):
        provider.host_certificate(KEY_LINE, ["h"], timedelta(0))


def test_krl_maps_fingerprints_to_ca_keys(provider: SshCertificateProvider) -> None:
    fingerprint = provider.ca_store.signer(CaKind.USER, NOW).fingerprint
    blob = provider.ca_store.active(CaKind.USER, NOW).public_blob
    krl = provider.krl([(fingerprint, 7), (fingerprint, 3), ("SHA256:unknown", 9)], 4, NOW)
    assert krl == build_krl({blob: [3, 7]}, 4, NOW, comment="jitgate")


def test_revoke_is_a_no_op_and_check_reports_health(tmp_path: Path) -> None:
    provider = SshCertificateProvider(CaStore(tmp_path / "ca", "pass phrase"), FrozenClock(NOW))
    provider.revoke(TARGET, "123")
    health = provider.check(TARGET)
    assert health.ok
    assert provider.ca_store.signer(CaKind.USER, NOW).fingerprint in health.detail
    locked = SshCertificateProvider(CaStore(tmp_path / "ca", "wrong"), FrozenClock(NOW))
    health = locked.check(TARGET)
    assert not health.ok
    assert "passphrase is wrong" in health.detail


def test_create_provider_takes_the_passphrase_from_options(tmp_path: Path) -> None:
    ctx = ProviderContext(
        data_dir=tmp_path, environ={}, clock=FrozenClock(NOW), options={"ca_passphrase": SecretStr("s3cret!")}
    )
    provider = create_provider(ctx)
    assert provider.ca_store.directory == tmp_path / "ca"
    assert provider.ca_store.encrypted
    assert "s3cret" not in repr(provider)
    issue(provider, request())
    with pytest.raises(JitgateError):
        create_provider(dataclasses.replace(ctx, options={"ca_passphrase": 42}))
