"""Failed authentications, counted per source address, with a token bucket per source.

Each source may fail ``limit`` times in a burst, and earns one more attempt every
``window / limit`` seconds. A source whose bucket is empty is throttled: its attempts are refused
before any credential is looked at, until the bucket holds one attempt again. Attempts refused
while throttled take nothing from the bucket, so a source that stops recovers on schedule.

Only failures cost: a source that authenticates never fills a bucket, and one source being
throttled does not touch another. At most ``max_sources`` buckets are kept, the least recently
used are dropped first, so a flood of addresses cannot grow memory without bound.

The throttle is pure bookkeeping with an injected monotonic clock. It says when a source *starts*
being throttled (``failed`` returns a ``Throttled``), so that the caller audits each episode once,
not each failure. An episode ends when the source's bucket is full again, that is when it has not
failed for up to ``window`` seconds; a source that keeps failing stays in one episode.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from jitgate.errors import TooManyFailures


@dataclass(frozen=True)
class Throttled:
    """A source has just become throttled, after ``failures`` failures in this episode."""

    source: str
    failures: int
    retry_after: float


@dataclass
class _Bucket:
    tokens: float
    at: float
    failures: int = 0
    reported: bool = False


class FailureThrottle:
    def __init__(
        self,
        *,
        limit: int = 20,
        window_seconds: float = 60.0,
        max_sources: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_seconds <= 0 or max_sources < 1:
            raise ValueError("a failure throttle needs limit >= 1, window > 0 and max_sources >= 1")
        self.limit = limit
        self._rate = limit / window_seconds
        self._max_sources = max_sources
        self._monotonic = monotonic
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()
        self.failures = 0
        """Failed authentications seen since start (all sources)."""
        self.refused = 0
        """Attempts refused because their source was throttled."""

    def check(self, source: str) -> None:
        """Raise ``TooManyFailures`` if ``source`` is throttled now; cheap when it has not failed."""
        if source not in self._buckets:  # the common case: no lock, no clock
            return
        with self._lock:
            bucket = self._refilled(source)
            if bucket is None or bucket.tokens >= 1:
                return
            self.refused += 1
            raise TooManyFailures(self._wait(bucket))

    def failed(self, source: str) -> Throttled | None:
        """Count one failure of ``source``; returns a ``Throttled`` if this failure started throttling."""
        with self._lock:
            self.failures += 1
            bucket = self._refilled(source)
            if bucket is None:
                bucket = _Bucket(tokens=float(self.limit), at=self._monotonic())
                self._buckets[source] = bucket
                while len(self._buckets) > self._max_sources:
                    self._buckets.popitem(last=False)
            bucket.tokens = max(0.0, bucket.tokens - 1)
            bucket.failures += 1
            if bucket.tokens >= 1 or bucket.reported:
                return None
            bucket.reported = True
            return Throttled(source=source, failures=bucket.failures, retry_after=self._wait(bucket))

    def sources(self) -> int:
        return len(self._buckets)

    def _refilled(self, source: str) -> _Bucket | None:
        """The bucket of ``source`` topped up to now, or ``None`` (forgotten) once it is full again."""
        bucket = self._buckets.get(source)
        if bucket is None:
            return None
        now = self._monotonic()
        bucket.tokens = min(float(self.limit), bucket.tokens + (now - bucket.at) * self._rate)
        bucket.at = now
        if bucket.tokens >= self.limit:
            del self._buckets[source]  # nothing left to remember; the next episode counts afresh
            return None
        self._buckets.move_to_end(source)
        return bucket

    def _wait(self, bucket: _Bucket) -> float:
        return (1 - bucket.tokens) / self._rate
