"""The shared pieces of the database providers: admin DSN lookup, scrubbing, login names (no server)."""

from __future__ import annotations

import pytest

from jitgate.errors import ProviderError
from jitgate.policy.model import Target
from jitgate.providers.dsn import admin_dsn, checked_login, new_login, scrub

TARGET = Target(name="orders-db", kind="postgres", admin_dsn_env="ORDERS_DSN")


def test_admin_dsn_is_read_at_use_and_errors_name_only_the_variable() -> None:
    assert admin_dsn({"ORDERS_DSN": " postgresql://a:b@h/d "}, TARGET) == "postgresql://a:b@h/d"
    with pytest.raises(
        ProviderError, match=r"^postgres target orders-db: environment variable ORDERS_DSN is not set$"
    ):
        admin_dsn({}, TARGET)
    with pytest.raises(ProviderError, match="ORDERS_DSN is empty"):
        admin_dsn({"ORDERS_DSN": ""}, TARGET)


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        (
            'missing "=" after "postgress://u:pw-1@h/d" in connection info string\n',
            (),
            'missing "=" after "postgress://u:***@h/d" in connection info string',
        ),
        ("bad option near password=hunter2 sslmode=x", (), "bad option near password=*** sslmode=x"),
        ("bad option near PASSWORD = 'hunter 2' x", (), "bad option near PASSWORD=*** x"),
        ("login as s3cr%2Ft failed", ("s3cr/t",), "login as *** failed"),
        ("first line\n\tsecond line with s3cret", ("s3cret",), "first line"),
        ("", (), "no detail"),
    ],
)
def test_scrub_leaves_one_line_without_secrets(text: str, secrets: tuple[str, ...], expected: str) -> None:
    assert scrub(text, secrets) == expected


def test_scrub_bounds_the_length() -> None:
    assert len(scrub("x" * 5000)) == 300


def test_login_names_are_fresh_safe_and_checked() -> None:
    name = new_login("Bob.Smith@Example.COM")
    assert name.startswith("jit_bobsmithexamplec_")
    assert checked_login(name) == name
    assert new_login("!!!").startswith("jit_user_")
    for bad in ("postgres", "jit_bob_XYZ", f"{name}'", "jit__0123456789ab"):
        with pytest.raises(ProviderError, match="not a login name jitgate creates"):
            checked_login(bad)
