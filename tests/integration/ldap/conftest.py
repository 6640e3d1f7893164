"""Fixtures for the directory tests: one real OpenLDAP slapd per test session (per xdist worker),
a subtree of its own per test, and the ldap provider bound as the directory's service account.

The broker's own database is SQLite here: these tests are about the directory, and the workflow
tests run the same broker logic on PostgreSQL too.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitgate.clock import FrozenClock
from jitgate.providers.base import ProviderContext
from jitgate.providers.ldap import LdapProvider, create_provider
from jitgate.store.db import Database
from jitgate.store.migrate import upgrade
from support.slapd import PASSWORD_ENV, Slapd, Tree, new_tree, remove, start_slapd


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = start_slapd(tmp_path_factory.mktemp("slapd"))
    yield server
    remove(server)


@pytest.fixture
def tree(slapd: Slapd) -> Tree:
    return new_tree(slapd, f"t{secrets.token_hex(4)}")


@pytest.fixture
def environ(slapd: Slapd) -> dict[str, str]:
    return {PASSWORD_ENV: slapd.service_password}


@pytest.fixture
def provider(environ: dict[str, str], tmp_path: Path, clock: FrozenClock) -> Iterator[LdapProvider]:
    made = create_provider(ProviderContext(data_dir=tmp_path, environ=environ, clock=clock))
    yield made
    made.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'jitgate.db'}")
    upgrade(database.engine)
    yield database
    database.dispose()
