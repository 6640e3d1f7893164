"""The real database fixtures of ``integration/db`` (private databases, admins, group roles), shared
with the attacks here, and its helpers importable as ``dbkit``; the gateway world's helpers too."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_DB = Path(__file__).resolve().parent.parent / "db"
# the db helpers, the shared gateway world (``gatewayworld``, ``sshd``) and this folder's own
for _helpers in (_DB, _DB.parent, Path(__file__).resolve().parent):
    if str(_helpers) not in sys.path:
        sys.path.insert(0, str(_helpers))

_spec = importlib.util.spec_from_file_location("redteam_db_fixtures", _DB / "conftest.py")
assert _spec is not None
assert _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

pg_env = _fixtures.pg_env
mariadb_env = _fixtures.mariadb_env
