"""Security properties, each with a test that fails if the property breaks:
no secret in logs or audit, and a database the broker cannot write refuses cleanly."""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from jitgate.audit.chain import AuditLog
from jitgate.audit.query import export, query
from jitgate.clock import FrozenClock
from jitgate.errors import InvalidInput, StorageUnavailable
from jitgate.policy.model import Policy
from jitgate.providers.base import Issued, IssueRequest
from jitgate.store.db import Database
from jitgate.store.migrate import upgrade
from jitgate.workflow import credentials
from jitgate.workflow import requests as svc
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from jitgate.workflow.scheduler import run_once
from support import ALICE
from support.providers import SwitchableProvider


def test_issued_secrets_never_reach_logs_or_the_audit_log(
    ctx: WorkflowContext, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    fake = SwitchableProvider()
    ctx.providers["fake"] = fake
    caplog.set_level(logging.DEBUG)
    svc.submit(ctx, ALICE, role="vault-read", duration="10m")
    _, issued = credentials.issue(ctx, ALICE, "vault-1")
    password = str(issued.secret["password"])
    fake.up = False
    clock.advance(timedelta(minutes=10))
    run_once(ctx)  # expiry, then a failing revocation that is logged and audited
    fake.up = True
    clock.advance(timedelta(minutes=5))
    run_once(ctx)
    with ctx.db.read() as conn:
        out = io.StringIO()
        export(conn, out)
    assert issued.handle in out.getvalue()  # the login is recorded...
    assert password not in out.getvalue()  # ...its password is not
    assert password not in caplog.text
    assert "revocation on vault-1 failed" in caplog.text


def test_the_audit_log_refuses_secret_looking_details(ctx: WorkflowContext) -> None:
    with pytest.raises(InvalidInput, match="secret"), ctx.db.write() as conn:
        ctx.audit_event(conn, "alice", "credential.issued", details={"password": "hunter2"})


def test_a_secret_pasted_into_a_reason_is_refused_not_recorded(ctx: WorkflowContext) -> None:
    pasted = "INC-1 use postgres://admin:hunter2@db.internal/orders"
    with pytest.raises(InvalidInput, match="refused"):
        svc.submit(ctx, ALICE, role="prod-shell", reason=pasted)
    with ctx.db.read() as conn:
        out = io.StringIO()
        export(conn, out)
    assert "hunter2" not in out.getvalue()
    assert "access.refused" in out.getvalue()


def test_a_read_only_database_is_a_clear_refusal(
    tmp_path: Path, policy: Policy, audit: AuditLog, clock: FrozenClock
) -> None:
    path = tmp_path / "jitgate.db"
    writable = Database(f"sqlite:///{path}")
    upgrade(writable.engine)
    writable.dispose()
    read_only = Database(f"sqlite:///file:{path}?mode=ro&uri=true")
    ctx = WorkflowContext(db=read_only, policies=PolicyHolder(policy), audit=audit, clock=clock)
    with pytest.raises(StorageUnavailable, match="read-only"):
        svc.submit(ctx, ALICE, role="stage-shell", duration="10m")
    read_only.dispose()


class BrokenProvider(SwitchableProvider):
    """A provider with a bug: it raises something no refusal path expects, quoting a secret."""

    def issue(self, request: IssueRequest, handle: str) -> Issued:
        raise KeyError("s3cret-in-the-message")


def test_an_unexpected_error_in_an_audited_step_is_still_audited_and_logged_without_its_message(
    ctx: WorkflowContext, caplog: pytest.LogCaptureFixture
) -> None:
    ctx.providers["fake"] = BrokenProvider()
    svc.submit(ctx, ALICE, role="vault-read", duration="10m")

    with caplog.at_level(logging.ERROR, logger="jitgate"), pytest.raises(KeyError):
        credentials.issue(ctx, ALICE, "vault-1")

    with ctx.db.read() as conn:
        (last,) = query(conn, action="access.refused", limit=1, newest_first=True)
    assert last.details["error"] == "internal_error"
    assert last.details["attempted"] == "credential.issue"
    assert "KeyError" in caplog.text
    assert "s3cret-in-the-message" not in caplog.text
