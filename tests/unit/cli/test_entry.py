"""``jitgate --version`` answers at once, before the command line loads."""

from __future__ import annotations

import subprocess
import sys

from jitgate import __version__


def test_version_is_one_line_and_exit_zero() -> None:
    for flag in ("--version", "-V"):
        done = subprocess.run(
            [sys.executable, "-m", "jitgate", flag], capture_output=True, text=True, timeout=30, check=False
        )
        assert (done.returncode, done.stdout, done.stderr) == (0, f"jitgate {__version__}\n", "")
