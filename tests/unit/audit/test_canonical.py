"""The canonical form of audit records, their hashes, the head message and the secret filter (no I/O)."""

from __future__ import annotations

import enum
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from jitgate.audit.canonical import (
    GENESIS_HASH,
    canonical_json,
    check_no_secrets,
    encodable,
    event_body,
    head_message,
    iso_utc,
    record_hash,
    secret_looking_key,
    secret_shape,
)
from jitgate.audit.chain import Event
from jitgate.auth.tokens import new_token

AT = datetime(2026, 3, 1, 9, 30, 5, 123456, tzinfo=UTC)


def body(**overrides: object) -> str:
    fields: dict[str, object] = {
        "seq": 1,
        "at": AT,
        "actor": "alice",
        "action": "request.created",
        "request_id": "r1",
        "grant_id": None,
        "role": "prod-shell",
        "target": None,
        "details": {},
        "prev": GENESIS_HASH,
    }
    fields.update(overrides)
    return event_body(**fields)  # type: ignore[arg-type]


def test_body_is_sorted_compact_json_with_every_field() -> None:
    text = body(details={"b": 1, "a": [True, None, "ü"]})
    assert text == (
        '{"action":"request.created","actor":"alice","at":"2026-03-01T09:30:05.123456Z",'
        '"details":{"a":[true,null,"ü"],"b":1},"grant_id":null,"prev":"' + GENESIS_HASH + '",'
        '"request_id":"r1","role":"prod-shell","seq":1,"target":null}'
    )


def test_same_content_gives_same_bytes_whatever_the_key_order_or_offset() -> None:
    paris = timezone(timedelta(hours=1))
    one = body(details={"x": 1, "y": {"b": 2, "a": 1}})
    two = body(details={"y": {"a": 1, "b": 2}, "x": 1}, at=AT.astimezone(paris))
    assert one == two


def test_datetimes_are_fixed_width_utc_z() -> None:
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"
    with pytest.raises(ValueError, match="naive"):
        iso_utc(datetime(2026, 1, 2))  # noqa: DTZ001 - the point of the test


def test_values_without_a_single_json_form_are_refused() -> None:
    for bad in (float("nan"), float("inf"), Decimal("1.5"), {1: "x"}, {"a": object()}, b"raw"):
        with pytest.raises(ValueError, match="value"):
            canonical_json(bad)


def test_enums_become_their_values() -> None:
    class Colour(enum.IntEnum):
        RED = 1

    class State(enum.StrEnum):
        ACTIVE = "ACTIVE"

    assert canonical_json({"c": Colour.RED, "s": State.ACTIVE}) == '{"c":1,"s":"ACTIVE"}'


def test_record_hash_is_domain_separated_sha256_over_prev_and_body() -> None:
    text = body()
    expected = hashlib.sha256(b"jitgate-audit-v1\x00" + GENESIS_HASH.encode() + b"\x00" + text.encode())
    assert record_hash(GENESIS_HASH, text) == expected.hexdigest()
    assert record_hash("1" * 64, text) != record_hash(GENESIS_HASH, text)
    assert record_hash(GENESIS_HASH, text + " ") != record_hash(GENESIS_HASH, text)


def test_head_message_names_seq_and_hash_and_cannot_be_a_record() -> None:
    digest = "ab" * 32
    assert head_message(12, digest) == b"jitgate-audit-head-v1\x0012\x00" + digest.encode()
    assert not head_message(0, GENESIS_HASH).startswith(b"jitgate-audit-v1\x00")
    with pytest.raises(ValueError, match="64-digit"):
        head_message(1, "AB" * 32)
    with pytest.raises(ValueError, match="non-negative"):
        head_message(-1, digest)


def test_body_round_trips_through_json() -> None:
    text = body(details={"lag_ms": 12.5, "n": 3, "when": AT})
    fields = json.loads(text)
    assert canonical_json(fields) == text


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "Password",
        "passphrase",
        "client_secret",
        "secret",
        "token",
        "api_token",
        "accessToken",
        "private_key",
        "privateKey",
        "api-key",
        "certificate",
        "cert",
        "dsn",
        "authorization",
        "session_key",
    ],
)
def test_secret_looking_keys_are_recognised(key: str) -> None:
    assert secret_looking_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "reason",
        "expires_at",
        "token_id",
        "cert_serial",
        "key_fingerprint",
        "revocations_queued",
        "lag_ms",
        "principals",
        "login",
        "kind",
    ],
)
def test_ordinary_keys_pass(key: str) -> None:
    assert not secret_looking_key(key)


def test_check_no_secrets_names_the_field_never_the_value() -> None:
    with pytest.raises(ValueError, match=r"details\.outer\.password") as caught:
        check_no_secrets({"outer": {"password": "hunter2"}})
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...", "PEM"),
        ("-----BEGIN CERTIFICATE-----\nMIIB...", "PEM"),
        ("ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQ= alice", "OpenSSH certificate"),
        ("postgresql://admin:s3cret@db.internal/orders", "URL with a password"),
        ("Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.sig", "JSON web token"),
    ],
)
def test_secret_looking_values_are_refused_even_nested(value: str, what: str) -> None:
    with pytest.raises(ValueError, match=what) as caught:
        check_no_secrets({"record": {"items": ["ok", value]}})
    assert "details.record.items[1]" in str(caught.value)
    assert value not in str(caught.value)


def test_harmless_details_pass() -> None:
    check_no_secrets(
        {
            "reason": "INC-42 disk full",
            "serial": 1234,
            "fingerprint": "SHA256:abc",
            "url": "https://jitgate.example/requests/1",
            "principals": ["deploy"],
        }
    )


@pytest.mark.parametrize(
    "details",
    [
        {},
        {"kind": "ssh", "serial": "18446744073709551615", "principals": ("deploy", "web")},
        {
            "nested": {"b": [1, 2.5, None, True], "a": "ünïcødé ✓"},
            "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        },
        {"quote": 'he said "no"\n', "empty": [], "zero": 0},
    ],
)
def test_a_checked_event_writes_exactly_the_canonical_body(details: dict[str, object]) -> None:
    at = datetime(2026, 11, 26, 9, 0, 0, 123456, tzinfo=UTC)
    event = Event.checked(at=at, actor="alice", action="credential.issued", grant_id="g-1", details=details)

    assert event.body(7, "ab" * 32) == event_body(
        seq=7,
        at=at,
        actor="alice",
        action="credential.issued",
        request_id=None,
        grant_id="g-1",
        role=None,
        target=None,
        details=details,
        prev="ab" * 32,
    )


@pytest.mark.parametrize(
    "where",
    ["{token}", "INC-42 my token is {token} sorry", "Bearer {token}", "token={token}&x=1", "x{token}y"],
)
def test_a_freshly_made_jitgate_api_token_is_recognised_as_a_secret_wherever_it_sits(where: str) -> None:
    token = new_token()
    value = where.format(token=token)
    assert secret_shape(value) == "jitgate API token"
    with pytest.raises(ValueError, match="jitgate API token") as caught:
        check_no_secrets({"reason": value})
    assert token not in str(caught.value)


@pytest.mark.parametrize("field", ["reason", "comment"])
def test_an_event_quoting_a_token_in_a_reason_or_comment_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=rf"details\.{field}: .*jitgate API token"):
        Event.checked(at=AT, actor="alice", action="request.created", details={field: f"see {new_token()}"})


@pytest.mark.parametrize(
    ("column", "value", "what"),
    [
        ("target", new_token(), "jitgate API token"),
        ("role", new_token(), "jitgate API token"),
        ("request_id", "-----BEGIN RSA PRIVATE KEY-----", "PEM"),
        ("grant_id", "-----BEGIN EC PRIVATE KEY-----", "PEM"),
    ],
    ids=["token-in-target", "token-in-role", "pem-in-request-id", "pem-in-grant-id"],  # stable across workers
)
def test_secrets_are_refused_in_the_record_columns_too(column: str, value: str, what: str) -> None:
    with pytest.raises(ValueError, match=rf"{column}: .*{what}"):
        Event.checked(at=AT, actor="alice", action="access.refused", **{column: value})


def test_a_truncated_or_foreign_token_shape_is_not_a_secret() -> None:
    assert secret_shape(new_token()[:40]) is None
    assert secret_shape("jg_short") is None
    assert secret_shape("prod_jg_cluster") is None


def test_text_without_a_utf8_form_is_refused_not_crashed_on() -> None:
    assert not encodable("web-\ud800")
    with pytest.raises(ValueError, match="not valid Unicode"):
        Event.checked(at=AT, actor="alice", action="request.created", details={"reason": "x\udcff"})
    with pytest.raises(ValueError, match="target: text that is not valid Unicode"):
        Event.checked(at=AT, actor="alice", action="access.refused", target="\ud800")
