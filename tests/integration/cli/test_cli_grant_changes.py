"""``jitgate grants``, the real command against a broker serving over HTTP, prints below its table
what each grant changed at its targets: a group held, withdrawn (and when), kept because it was
held before, and the work still pending while the directory is down; ``--json`` carries the same
as data, with ``elevations_pending``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from jitgate.api.app import create_app
from jitgate.clock import FrozenClock
from jitgate.runtime import Runtime
from support.elevated_grants import GROUP, OTHER, PRIOR, ElevatedGrants, elevated_grants


@pytest.fixture
def world(runtime: Runtime, clock: FrozenClock) -> ElevatedGrants:
    return elevated_grants(runtime, clock)


@pytest.fixture
def served(world: ElevatedGrants) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        create_app(world.runtime, run_scheduler=False), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("the app did not start")
        time.sleep(0.05)  # polling for the server thread to listen
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)


def jitgate(served: str, world: ElevatedGrants, tmp_path: Path, *args: str) -> str:
    env = {
        **os.environ,
        "JITGATE_URL": served,
        "JITGATE_TOKEN": world.token,
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "jitgate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_jitgate_grants_prints_what_each_grant_changed_at_its_targets(
    served: str, world: ElevatedGrants, tmp_path: Path
) -> None:
    shown = jitgate(served, world, tmp_path, "grants").splitlines()
    changes = shown[shown.index("changed at targets:") + 1 :]
    assert changes == [
        f"  {world.pending} corp-directory: joined {OTHER} as alice (planned)",
        f"  {world.pending} corp-directory: pending: to be applied, 1 attempt failed, "
        "next at 2026-11-26 09:05:07Z, last error: target corp-directory: cannot connect: connection refused",
        f"  {world.held} corp-directory: joined {GROUP} as uid=alice (held)",
        f"  {world.ended} corp-directory: joined {PRIOR} as uid=alice (kept: held before the grant)",
        f"  {world.ended} corp-directory: joined {GROUP} as uid=alice (withdrawn at 2026-11-26 09:05:01Z)",
    ]


def test_jitgate_grants_json_carries_the_elevations_and_the_count_still_pending(
    served: str, world: ElevatedGrants, tmp_path: Path
) -> None:
    found = {g["id"]: g for g in json.loads(jitgate(served, world, tmp_path, "grants", "--json"))}
    assert {g: found[g]["elevations_pending"] for g in found} == {
        world.ended: 0,
        world.held: 0,
        world.pending: 1,
        world.shell: 0,
    }
    (elevation,) = found[world.held]["elevations"]
    assert (elevation["target"], elevation["account"], elevation["items"][0]["state"]) == (
        "corp-directory",
        "uid=alice",
        "held",
    )


def test_jitgate_show_prints_the_changes_under_the_requests_grant(
    served: str, world: ElevatedGrants, tmp_path: Path
) -> None:
    found = {g["id"]: g for g in json.loads(jitgate(served, world, tmp_path, "grants", "--json"))}
    shown = jitgate(served, world, tmp_path, "show", found[world.held]["request_id"]).splitlines()
    assert shown[-1] == f"    corp-directory: joined {GROUP} as uid=alice (held)"
