"""Fixtures for tests that drive the broker the way its server does: a runtime built from settings
on a fresh data directory with the test policy, and an HTTP client on the app it serves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.clock import FrozenClock
from jitgate.runtime import Runtime, build_runtime
from jitgate.settings import Settings
from support import TEST_POLICY


@pytest.fixture
def runtime(tmp_path: Path, clock: FrozenClock) -> Iterator[Runtime]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY)
    rt = build_runtime(Settings(data_dir=tmp_path / "data", policy_file=policy), clock=clock)
    yield rt
    rt.ctx.db.dispose()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime, run_scheduler=False)) as test_client:
        yield test_client
