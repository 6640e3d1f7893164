"""Slack's request signature and the Slack user map: what is believed, and what is refused."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jitgate.auth.slack import expected_signature, load_slack_users, verify_request
from jitgate.clock import FrozenClock
from jitgate.errors import InvalidInput, Unauthenticated

SECRET = b"8f742231b10e8888abcd99yyyzzz85a5"
BODY = b"payload=%7B%22type%22%3A%22block_actions%22%7D"
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
STAMP = str(int(NOW.timestamp()))


def slack_signs(body: bytes, timestamp: str, secret: bytes = SECRET) -> str:
    """The signature as Slack documents it, computed here without the broker's code."""
    return "v0=" + hmac.new(secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


def check(
    clock: FrozenClock, *, timestamp: str | None = STAMP, signature: str | None = None, body: bytes = BODY
) -> None:
    verify_request(
        SECRET,
        timestamp=timestamp,
        signature=slack_signs(BODY, STAMP) if signature is None else signature,
        body=body,
        now=clock.now(),
    )


@pytest.fixture
def at_now() -> FrozenClock:
    return FrozenClock(NOW)


def test_the_signature_is_slacks_v0_hmac_of_version_timestamp_and_body() -> None:
    assert expected_signature(SECRET, STAMP, BODY) == slack_signs(BODY, STAMP)
    known = "v0=" + hmac.new(SECRET, f"v0:{STAMP}:".encode() + BODY, "sha256").hexdigest()
    assert expected_signature(SECRET, STAMP, BODY) == known


def test_a_request_signed_now_is_believed(at_now: FrozenClock) -> None:
    check(at_now)


@pytest.mark.parametrize(
    ("signature", "why"),
    [
        ("v0=" + "0" * 64, "does not match"),
        (slack_signs(BODY, STAMP, b"another-apps-secret").upper(), "does not match"),
        (slack_signs(BODY, STAMP).replace("v0=", "v1="), "does not match"),
        (slack_signs(BODY, STAMP)[3:], "does not match"),
        (slack_signs(BODY, str(int(STAMP) - 1)), "does not match"),
        ("", "missing X-Slack-Signature"),
        ("v0=ü", "does not match"),
    ],
)
def test_a_wrong_signature_is_refused(at_now: FrozenClock, signature: str, why: str) -> None:
    with pytest.raises(Unauthenticated, match=why):
        check(at_now, signature=signature)


def test_a_body_changed_after_signing_is_refused(at_now: FrozenClock) -> None:
    with pytest.raises(Unauthenticated, match="does not match"):
        check(at_now, body=BODY + b"&x=1")


@pytest.mark.parametrize("timestamp", [None, "", "1.5", "-30", "12e3", " 1764147600", "9" * 13])
def test_a_missing_or_malformed_timestamp_is_refused(at_now: FrozenClock, timestamp: str | None) -> None:
    with pytest.raises(Unauthenticated, match="X-Slack-Request-Timestamp"):
        check(at_now, timestamp=timestamp)


@pytest.mark.parametrize("seconds", [-300, 300, 0])
def test_a_timestamp_up_to_five_minutes_either_way_is_believed(at_now: FrozenClock, seconds: int) -> None:
    at_now.advance(timedelta(seconds=seconds))
    check(at_now)


@pytest.mark.parametrize("seconds", [301, -301, 86400, -86400])
def test_a_timestamp_past_five_minutes_either_way_is_refused(at_now: FrozenClock, seconds: int) -> None:
    at_now.advance(timedelta(seconds=seconds))
    with pytest.raises(Unauthenticated, match="more than 300 s from the broker's clock"):
        check(at_now)


def users_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slack-users.yaml"
    path.write_text(text)
    return path


def test_the_user_map_names_local_users_per_workspace_or_for_any(tmp_path: Path) -> None:
    users = load_slack_users(users_file(tmp_path, "# who is who\nT0001:U0BOB: bob\nU0ERIN: erin\n"))
    assert users.local_name("T0001", "U0BOB") == "bob"
    assert users.local_name("T0002", "U0BOB") is None
    assert users.local_name("T0002", "U0ERIN") == "erin"
    assert users.local_name("T0001", "U0MALLORY") is None
    assert users.slack_id("bob") == "U0BOB"
    assert users.slack_id("alice") is None


def test_an_empty_user_map_links_nobody(tmp_path: Path) -> None:
    assert load_slack_users(users_file(tmp_path, "# nobody yet\n")).local_name("T0001", "U0BOB") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("U0BOB: oidc:bob\n", "slack-users.yaml:1: 'oidc:bob' is not a valid user name; only local users"),
        ("U0BOB: bob\nbob: U0BOB\n", "slack-users.yaml:2: 'bob' is not a Slack user id"),
        ("U0BOB: bob\nT1X:U0BOB: erin\n", "slack-users.yaml:2: Slack user U0BOB is mapped already (line 1)"),
        ("U0BOB: bob\nU0ROB: bob\n", "slack-users.yaml:2: bob is mapped already (line 1)"),
        ("U0BOB: jitgate\n", "reserved for the broker"),
        ("U0BOB: [bob, erin]\n", "slack-users.yaml:1: expected `SLACK_USER: jitgate-user`"),
        ("- U0BOB\n", "slack-users.yaml:1: expected `SLACK_USER: jitgate-user` lines"),
        ("U0BOB: bob\n  bad: [\n", "slack-users.yaml:2: not a YAML mapping"),
        ("u0bob: bob\n", "is not a Slack user id"),
    ],
)
def test_a_bad_user_map_is_refused_with_its_line(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        load_slack_users(users_file(tmp_path, text))
    assert problem in refused.value.message
    assert refused.value.message.startswith("slack-users.yaml:")
    assert "\n" not in refused.value.message


def test_a_missing_user_map_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"^absent.yaml: cannot read the Slack user map: No such file"):
        load_slack_users(tmp_path / "absent.yaml")
