"""The app of one worker process when ``jitgate server --workers N`` runs several.

Each worker is a whole broker on the shared database: its own runtime, scheduler and caches. What
must be done once (policy check, migrations, keys) was done by the parent before the workers
started; the parent passes its settings down as ``JITGATE_*`` environment variables.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from jitgate.api.app import create_app, settle_heap
from jitgate.runtime import build_runtime
from jitgate.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def app() -> FastAPI:
    """The app of this worker (``factory=True``), its runtime built from the environment."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    app = create_app(build_runtime(Settings()), close_runtime=True)
    settle_heap()
    return app
