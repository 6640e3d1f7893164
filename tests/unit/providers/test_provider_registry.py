"""The provider registry: built-ins and entry points, with broken providers failing alone.

No server needed; entry points are real ``importlib.metadata.EntryPoint`` objects pointing at
small modules written for the test.
"""

from __future__ import annotations

import logging
import secrets
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from jitgate.clock import SystemClock
from jitgate.policy.model import Policy, Target
from jitgate.providers.base import ProviderContext
from jitgate.providers.mariadb import MariadbProvider
from jitgate.providers.postgres import PostgresProvider
from jitgate.providers.registry import GROUP, check_policy_kinds, discover, load_providers

FAKE_PROVIDER = """
from jitgate.providers.base import Health

class VaultishProvider:
    kind = "vaultish"
    revocable = False

    def __init__(self, ctx):
        self.ctx = ctx

    def new_handle(self, request):
        return "h-1"

    def issue(self, request, handle):
        raise NotImplementedError

    def revoke(self, target, handle):
        return None

    def check(self, target):
        return Health(ok=True, detail="fine")

def create_provider(ctx):
    return VaultishProvider(ctx)

def explode(ctx):
    raise RuntimeError("cannot reach the vault\\nsecond line of detail")

def not_a_provider(ctx):
    return object()

def wrong_kind(ctx):
    provider = VaultishProvider(ctx)
    provider.kind = "other"
    return provider

NOT_CALLABLE = 42
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A throwaway module on sys.path holding provider factories good and bad; returns its name."""
    name = f"jg_plugin_{secrets.token_hex(4)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(FAKE_PROVIDER))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def provider_context(tmp_path: Path, environ: dict[str, str]) -> ProviderContext:
    return ProviderContext(data_dir=tmp_path, environ=environ, clock=SystemClock())


def point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=GROUP)


def test_builtins_and_a_third_party_provider_load(tmp_path: Path, plugin: str) -> None:
    ctx = provider_context(tmp_path, {})
    loaded = discover(
        ctx, {"postgres", "mariadb", "vaultish"}, found=[point("vaultish", f"{plugin}:create_provider")]
    )
    assert loaded.problems == ()
    assert isinstance(loaded.providers["postgres"], PostgresProvider)
    assert isinstance(loaded.providers["mariadb"], MariadbProvider)
    vaultish = loaded.providers["vaultish"]
    assert vaultish.kind == "vaultish"
    assert vaultish.check(Target(name="v", kind="vaultish")).ok


def test_only_the_kinds_asked_for_are_loaded(tmp_path: Path, plugin: str) -> None:
    found = [point("vaultish", f"{plugin}:explode")]
    loaded = discover(provider_context(tmp_path, {}), {"postgres"}, found=found)
    assert set(loaded.providers) == {"postgres"}
    assert loaded.problems == ()


def test_each_broken_provider_is_one_line_naming_it_and_the_others_still_work(
    tmp_path: Path, plugin: str, caplog: pytest.LogCaptureFixture
) -> None:
    found = [
        point("missing", "jg_no_such_module_zz:create_provider"),
        point("explodes", f"{plugin}:explode"),
        point("notprov", f"{plugin}:not_a_provider"),
        point("wrongkind", f"{plugin}:wrong_kind"),
        point("notcallable", f"{plugin}:NOT_CALLABLE"),
        point("noattr", f"{plugin}:no_such_factory"),
    ]
    kinds = {"postgres", "missing", "explodes", "notprov", "wrongkind", "notcallable", "noattr", "nothing"}
    with caplog.at_level(logging.ERROR, logger="jitgate.providers.registry"):
        providers = load_providers(provider_context(tmp_path, {}), kinds, found=found)
    assert set(providers) == {"postgres"}
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 7
    assert all("\n" not in line for line in lines)
    expected = {
        "missing": "jg_no_such_module_zz:create_provider) failed to import: ModuleNotFoundError",
        "explodes": "failed to start: RuntimeError: cannot reach the vault",
        "notprov": "returned object, which is not a CredentialProvider",
        "wrongkind": "serves kind 'other', not 'wrongkind'",
        "notcallable": "is not callable",
        "noattr": "failed to import: AttributeError",
        "nothing": "no provider is installed for kind 'nothing'",
    }
    for kind, text in expected.items():
        assert any(repr(kind) in line and text in line for line in lines), (kind, lines)


def test_a_built_in_kind_cannot_be_taken_over(tmp_path: Path, plugin: str) -> None:
    found = [
        point("postgres", f"{plugin}:create_provider"),
        point("postgres", "jitgate.providers.postgres:create_provider"),
    ]
    loaded = discover(provider_context(tmp_path, {}), {"postgres"}, found=found)
    assert isinstance(loaded.providers["postgres"], PostgresProvider)
    assert len(loaded.problems) == 1
    assert "'postgres' is a built-in kind" in loaded.problems[0]


def test_two_distributions_claiming_one_kind_are_both_refused(tmp_path: Path, plugin: str) -> None:
    found = [
        point("vaultish", f"{plugin}:create_provider"),
        point("vaultish", f"{plugin}:create_provider"),  # the same one seen twice is not a conflict
        point("vaultish", f"{plugin}:wrong_kind"),
    ]
    loaded = discover(provider_context(tmp_path, {}), {"vaultish"}, found=found)
    assert loaded.providers == {}
    assert loaded.problems == (
        f"kind 'vaultish' is claimed by several providers ({plugin}:create_provider, {plugin}:wrong_kind);"
        " refusing all of them",
    )


def test_installed_entry_points_are_found(tmp_path: Path) -> None:
    loaded = discover(provider_context(tmp_path, {}), {"postgres", "mariadb"})
    assert set(loaded.providers) == {"postgres", "mariadb"}


def test_policy_targets_without_a_provider_are_named() -> None:
    policy = Policy(
        targets=(
            Target(name="orders-db", kind="postgres", admin_dsn_env="ORDERS_DSN"),
            Target(name="vault-1", kind="vaultish"),
            Target(name="legacy", kind="oracle"),
        )
    )
    assert check_policy_kinds(policy, {"postgres", "vaultish"}) == [
        "target legacy: no credential provider for kind 'oracle'"
    ]
    assert check_policy_kinds(policy, {"postgres", "vaultish", "oracle"}) == []
