"""The audit record of a refusal records whatever the caller sent, safely, and never fails (no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from jitgate.audit.canonical import check_no_secrets, secret_shape
from jitgate.audit.chain import AuditLog
from jitgate.audit.keys import load_or_create_signing_key
from jitgate.audit.redact import MAX_REASON, MAX_TEXT, recordable, refusal
from jitgate.auth.tokens import new_token

AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def tag(value: str) -> str:
    return f"t{len(value)}"


def test_a_secret_looking_value_is_withheld_with_its_shape_length_and_tag() -> None:
    token = new_token()
    assert recordable(f"no target named {token!r}", tag) == (
        "[withheld jitgate API token: 64 chars, tag t64]"
    )
    assert recordable("postgres://admin:hunter2@db/x", tag).startswith("[withheld URL with a password: ")


def test_text_without_a_utf8_form_is_escaped_and_long_text_cut_saying_how_long() -> None:
    assert recordable("web-\ud800", tag) == "web-\\ud800"
    cut = recordable("x" * 5000, tag)
    assert len(cut) == MAX_TEXT
    assert cut.endswith("…[5000 chars]")
    assert recordable("INC-42 disk full", tag) == "INC-42 disk full"


def test_ids_that_do_not_fit_their_column_move_into_the_details() -> None:
    event = refusal(
        at=AT,
        actor="alice",
        attempted="request.cancel",
        error="not_found",
        reason="no request " + "r" * 100,
        tag=tag,
        request_id="r" * 100,
        grant_id="-----BEGIN EC PRIVATE KEY-----",
        role="stage-shell",
    )
    assert event.request_id is None
    assert event.grant_id is None
    assert event.role == "stage-shell"
    assert event.details["given_request_id"] == "r" * 100
    assert event.details["given_grant_id"].startswith("[withheld PEM key or certificate: ")


def test_withheld_tags_are_keyed_by_the_audit_key(tmp_path: Path) -> None:
    one = AuditLog(load_or_create_signing_key(tmp_path / "one.pem"))
    other = AuditLog(load_or_create_signing_key(tmp_path / "other.pem"))
    token = new_token()
    assert one.withheld_tag(token) == one.withheld_tag(token)
    assert one.withheld_tag(token) != other.withheld_tag(token)
    assert one.withheld_tag(token) != one.withheld_tag(new_token())


caller_text = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["-----BEGIN RSA PRIVATE KEY-----", "a://u:p@h", "\ud800", "", "x" * 3000]),
    st.builds(lambda a, b: a + new_token() + b, st.text(max_size=5), st.text(max_size=5)),
)


@given(
    target=caller_text,
    reason=caller_text,
    request_id=st.none() | caller_text,
    role=st.none() | caller_text,
    actor=st.sampled_from(["alice", "x" * 200, new_token()]),
)
@settings(max_examples=300, deadline=None)
def test_a_refusal_record_is_built_whatever_the_caller_sent(
    target: str, reason: str, request_id: str | None, role: str | None, actor: str
) -> None:
    event = refusal(
        at=AT,
        actor=actor,
        attempted="credential.issue",
        error="not_found",
        reason=reason,
        tag=tag,
        target=target,
        request_id=request_id,
        role=role,
    )
    body = event.body(1, "0" * 64)
    body.encode()  # hashable: it has a UTF-8 form
    check_no_secrets(json.loads(body))
    assert len(event.details["reason"]) <= MAX_REASON
    assert all(secret_shape(v) is None for v in (event.target, event.actor, event.role) if v)
