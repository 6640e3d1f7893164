"""The settings of the console's single sign-on: on with an issuer and a client id, the client
secret from the environment or a file (never shown), the callback under the public URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jitgate.errors import PolicyFileError
from jitgate.runtime import check_oidc_settings
from jitgate.settings import Settings


def test_single_sign_on_is_on_with_an_issuer_and_a_client_id() -> None:
    assert not Settings(oidc_issuer="https://idp.example").oidc_web_enabled
    assert not Settings(oidc_client_id="jitgate").oidc_web_enabled
    assert Settings(oidc_issuer="https://idp.example", oidc_client_id="jitgate").oidc_web_enabled


def test_the_callback_is_under_the_public_url_or_the_listen_address() -> None:
    assert Settings(listen="127.0.0.1:9000").oidc_callback_url == "http://127.0.0.1:9000/ui/oidc/callback"
    public = Settings(public_url="https://jitgate.example/")
    assert public.oidc_callback_url == "https://jitgate.example/ui/oidc/callback"
    own = Settings(oidc_redirect_url="https://sso.example/ui/oidc/callback")
    assert own.oidc_callback_url == "https://sso.example/ui/oidc/callback"


def test_the_client_secret_comes_from_its_file_and_is_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-from-a-file\n")
    settings = Settings(oidc_client_secret_file=secret)
    assert settings.oidc_client_secret is not None
    assert settings.oidc_client_secret.get_secret_value() == "s3cr3t-from-a-file"
    assert "s3cr3t" not in repr(settings)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"oidc_issuer": "http://idp.example"}, "https"),
        ({"oidc_issuer": "https://idp.example", "oidc_scopes": "profile groups"}, "openid"),
    ],
)
def test_a_configuration_that_cannot_work_is_refused_before_anything_opens(
    options: dict[str, Any], says: str
) -> None:
    with pytest.raises(PolicyFileError, match=says):
        check_oidc_settings(Settings(oidc_client_id="jitgate", **options))
