"""Certificates asked for at the same moment are decided one by one and committed together."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from jitgate.api.problems import status_of
from jitgate.audit.verify import verify
from jitgate.auth.tokens import new_token
from jitgate.clock import FrozenClock
from jitgate.errors import Conflict, InternalError, InvalidInput, NotFound, PolicyDenied, StorageUnavailable
from jitgate.providers.base import Issued, IssueRequest
from jitgate.providers.ssh.ca import CaStore
from jitgate.providers.ssh.provider import SshCertificateProvider
from jitgate.store import issuance
from jitgate.store.tables import audit_events, credentials
from jitgate.workflow import grants, minting
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.minting import MintAsk, Minted
from support import ADMIN, ALICE, MALLORY
from support.keys import MALFORMED


def _key() -> str:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


@pytest.fixture
def ssh(ctx: WorkflowContext, clock: FrozenClock, tmp_path: Path) -> SshCertificateProvider:
    provider = SshCertificateProvider(CaStore(tmp_path / "ca"), clock)
    ctx.providers["ssh"] = provider
    return provider


def _issued_rows(ctx: WorkflowContext) -> list[str]:
    with ctx.db.read() as conn:
        return list(conn.execute(sa.select(credentials.c.handle)).scalars())


def _audit_tail(ctx: WorkflowContext, after: int) -> list[tuple[str, str]]:
    with ctx.db.read() as conn:
        rows = conn.execute(
            sa.select(audit_events.c.actor, audit_events.c.action)
            .where(audit_events.c.seq > after)
            .order_by(audit_events.c.seq)
        )
        return [(r.actor, r.action) for r in rows]


def _last_seq(ctx: WorkflowContext) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.max(audit_events.c.seq))).scalar_one())


def test_each_ask_in_a_batch_is_decided_alone_and_all_are_recorded_in_one_transaction(
    ctx: WorkflowContext, ssh: SshCertificateProvider
) -> None:
    svc.submit(ctx, ALICE, role="stage-shell", duration="10m")
    before = _last_seq(ctx)
    asks = [
        MintAsk(ALICE, "stage-1", {"public_key": _key()}, kind="ssh"),
        MintAsk(MALLORY, "stage-1", {"public_key": _key()}, kind="ssh"),  # holds no grant
        MintAsk(ALICE, "stage-1", {"public_key": "not a key"}, kind="ssh"),
        MintAsk(ALICE, "web-1", {"public_key": _key()}, kind="ssh"),  # not covered by her grant
        MintAsk(ALICE, "stage-1", {"public_key": _key(), "login": "root"}, kind="ssh"),  # not her login
        MintAsk(ALICE, "stage-1", {"public_key": _key(), "principals": ["root"]}, kind="ssh"),  # smuggled
        MintAsk(ALICE, "stage-1", {"public_key": _key()}, kind="ssh"),
    ]

    results = minting.mint_many(ctx, asks)

    assert [type(r) for r in results] == [
        Minted,
        PolicyDenied,
        InvalidInput,
        PolicyDenied,
        PolicyDenied,
        InvalidInput,
        Minted,
    ]
    minted = [r for r in results if isinstance(r, Minted)]
    assert sorted(_issued_rows(ctx)) == sorted(m.issued.handle for m in minted)
    assert minted[0].issued.handle != minted[1].issued.handle
    assert _audit_tail(ctx, before) == [
        ("alice", "credential.issued"),
        ("mallory", "access.refused"),
        ("alice", "access.refused"),
        ("alice", "access.refused"),
        ("alice", "access.refused"),
        ("alice", "access.refused"),
        ("alice", "credential.issued"),
    ]
    with ctx.db.read() as conn:
        assert verify(conn, ctx.audit.public_key).ok


class EndsTheGrantWhileSigning:
    """Signs, then has an admin revoke the grant: the race the second check exists for."""

    kind = "ssh"
    revocable = False

    def __init__(self, real: SshCertificateProvider, ctx: WorkflowContext) -> None:
        self.real, self.ctx = real, ctx

    def new_handle(self, request: IssueRequest) -> str:
        return self.real.new_handle(request)

    def issue(self, request: IssueRequest, handle: str) -> Issued:
        issued = self.real.issue(request, handle)
        grants.revoke(self.ctx, ADMIN, request.grant.id, comment="revoked mid-issue")
        return issued


def test_a_certificate_whose_grant_ends_before_the_commit_is_never_released_or_recorded(
    ctx: WorkflowContext, ssh: SshCertificateProvider
) -> None:
    svc.submit(ctx, ALICE, role="stage-shell", duration="10m")
    ctx.providers["ssh"] = EndsTheGrantWhileSigning(ssh, ctx)  # type: ignore[assignment]

    (result,) = minting.mint_many(ctx, [MintAsk(ALICE, "stage-1", {"public_key": _key()}, kind="ssh")])

    assert isinstance(result, Conflict)
    assert _issued_rows(ctx) == []
    assert _audit_tail(ctx, _last_seq(ctx) - 1) == [("alice", "access.refused")]


def test_a_storage_failure_fails_the_whole_batch_and_records_nothing(
    ctx: WorkflowContext, ssh: SshCertificateProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.submit(ctx, ALICE, role="stage-shell", duration="10m")
    before = _last_seq(ctx)

    def broken(*_args: object) -> None:
        raise StorageUnavailable("the broker's database failed: disk I/O error")

    monkeypatch.setattr(issuance, "insert_issued_credentials", broken)
    asks = [MintAsk(ALICE, "stage-1", {"public_key": _key()}, kind="ssh") for _ in range(3)]

    with pytest.raises(StorageUnavailable):
        minting.mint_many(ctx, asks)

    assert _issued_rows(ctx) == []
    assert _last_seq(ctx) == before


def test_a_target_of_another_kind_is_refused_with_the_command_to_use(
    ctx: WorkflowContext, ssh: SshCertificateProvider
) -> None:
    svc.submit(ctx, ALICE, role="vault-read", duration="10m")

    (result,) = minting.mint_many(ctx, [MintAsk(ALICE, "vault-1", {"public_key": _key()}, kind="ssh")])

    assert isinstance(result, InvalidInput)
    assert "use jitgate db" in result.message


def _bodies(ctx: WorkflowContext, after: int) -> list[str]:
    with ctx.db.read() as conn:
        rows = conn.execute(sa.select(audit_events.c.body).where(audit_events.c.seq > after))
        return list(rows.scalars())


SECRET_TARGETS = {
    "pem": "-----BEGIN RSA PRIVATE KEY-----",
    "url with a password": "postgres://admin:hunter2@db/orders",
    "api token": new_token(),
    "jwt": "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.x",
    "not unicode": "web-\ud800",
    "overlong": "w" * 5000,
}


def test_secret_looking_targets_and_malformed_keys_fail_alone_and_every_refusal_is_audited(
    ctx: WorkflowContext, ssh: SshCertificateProvider
) -> None:
    svc.submit(ctx, ALICE, role="stage-shell", duration="10m")
    before = _last_seq(ctx)
    bad = [MintAsk(ALICE, target, {"public_key": _key()}, kind="ssh") for target in SECRET_TARGETS.values()]
    bad += [MintAsk(ALICE, "stage-1", {"public_key": line}, kind="ssh") for line in MALFORMED.values()]
    good = [MintAsk(ALICE, "stage-1", {"public_key": _key()}, kind="ssh") for _ in range(20)]
    asks = [*good, *bad]
    random.Random(7).shuffle(asks)

    results = minting.mint_many(ctx, asks)

    for ask, result in zip(asks, results, strict=True):
        if ask in good:
            assert isinstance(result, Minted)
        else:
            assert isinstance(result, InvalidInput | NotFound), (ask.target[:40], result)
    assert len(_issued_rows(ctx)) == len(good)
    actions = [action for _, action in _audit_tail(ctx, before)]
    assert actions.count("credential.issued") == len(good)
    assert actions.count("access.refused") == len(bad)
    recorded = "\n".join(_bodies(ctx, before))
    for secret in ("hunter2", SECRET_TARGETS["api token"], "PRIVATE KEY", SECRET_TARGETS["jwt"]):
        assert secret not in recorded
    assert "[withheld jitgate API token: 46 chars, tag " in recorded
    with ctx.db.read() as conn:
        assert verify(conn, ctx.audit.public_key).ok


class BreaksOnOneKey:
    """Raises an unexpected exception (quoting the key) for one key, like a bug would."""

    kind = "ssh"
    revocable = False

    def __init__(self, real: SshCertificateProvider, poison: str) -> None:
        self.real, self.poison = real, poison

    def new_handle(self, request: IssueRequest) -> str:
        return self.real.new_handle(request)

    def issue(self, request: IssueRequest, handle: str) -> Issued:
        if request.params["public_key"] == self.poison:
            raise OverflowError(f"cannot handle {self.poison}")
        return self.real.issue(request, handle)


def test_an_unexpected_error_preparing_one_ask_fails_that_ask_alone_logged_without_its_message(
    ctx: WorkflowContext, ssh: SshCertificateProvider, caplog: pytest.LogCaptureFixture
) -> None:
    svc.submit(ctx, ALICE, role="stage-shell", duration="10m")
    poison = _key()
    ctx.providers["ssh"] = BreaksOnOneKey(ssh, poison)  # type: ignore[assignment]
    before = _last_seq(ctx)
    asks = [MintAsk(ALICE, "stage-1", {"public_key": k}, kind="ssh") for k in (_key(), poison, _key())]

    with caplog.at_level(logging.ERROR, logger="jitgate"):
        first, broken, last = minting.mint_many(ctx, asks)

    assert isinstance(first, Minted)
    assert isinstance(last, Minted)
    assert isinstance(broken, InternalError)
    assert status_of(broken) == 500
    assert _audit_tail(ctx, before) == [
        ("alice", "credential.issued"),
        ("alice", "access.refused"),
        ("alice", "credential.issued"),
    ]
    assert '"error":"internal_error"' in _bodies(ctx, before)[1]
    assert "OverflowError" in caplog.text
    assert poison.split()[1] not in caplog.text
