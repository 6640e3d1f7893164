"""An exclusive advisory lock on a file, for broker processes sharing one data directory.

The kernel releases it when the holder closes the file or dies, so a crashed process never
leaves it taken.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the lock on ``path`` (created 0600 if missing) for the block; waits for other holders."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
