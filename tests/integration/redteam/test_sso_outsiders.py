"""The console's single sign-on attacked by someone with no account, on a real OpenID provider.

Starting a sign-in costs an outsider one unauthenticated ``GET /ui/oidc/start``. The broker keeps a
row for each sign-in under way, so the rows are bounded; the bound must never become a way to keep
everybody else from signing in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.auth import oidc_flow
from jitgate.store import oidc_sign_ins
from support.oidcprovider import ACCOUNTS, OidcProvider, start_provider
from support.ssobroker import SsoBroker, landing, provider_clients, sso_broker, sso_sign_in

ATTACKER = ("203.0.113.66", 40000)
VICTIM = ("198.51.100.7", 40000)


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with start_provider(tmp_path_factory.mktemp("idp"), provider_clients()) as provider:
        yield provider


@pytest.fixture
def broker(tmp_path: Path, idp: OidcProvider) -> Iterator[SsoBroker]:
    idp.set_accounts(ACCOUNTS)
    with sso_broker(tmp_path, idp) as found:
        yield found


def browser_at(broker: SsoBroker, address: tuple[str, int]) -> TestClient:
    return TestClient(
        create_app(broker.runtime, run_scheduler=False), base_url="http://testserver", client=address
    )


def under_way(broker: SsoBroker) -> int:
    with broker.runtime.ctx.db.read() as conn:
        return oidc_sign_ins.count_sign_ins(conn)


def test_an_outsider_starting_sign_ins_in_a_loop_never_keeps_another_person_from_signing_in(
    broker: SsoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oidc_flow, "MAX_UNDER_WAY", 120)
    with browser_at(broker, ATTACKER) as attacker:
        for _ in range(150):
            assert attacker.get("/ui/oidc/start", follow_redirects=False).status_code == 303
    assert under_way(broker) == 120  # bounded: the oldest gave way to the newest
    with browser_at(broker, VICTIM) as victim:
        assert landing(sso_sign_in(broker, victim, "dave")) == "/ui/"
    assert under_way(broker) == 119  # the victim's pushed out one of the flood's, then was taken
