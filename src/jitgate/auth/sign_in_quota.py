"""How many console sign-ins one source address may have under way, and which give way to new ones.

Anyone may start a sign-in: it costs one ``GET /ui/oidc/start`` and no credential. Refusing new
sign-ins once many are under way would let one outsider lock everybody out of single sign-on by
starting them in a loop. So nothing is ever refused: each address keeps at most ``per_source``
sign-ins under way (this process remembers which), and a new one pushes out that address's
oldest. A flood from one address therefore only ever replaces its own sign-ins. (A flood from many
addresses is met by the table's overall bound, which also pushes out the oldest: see
``auth/oidc_flow.py``.)

Several people behind one address (an office, a NAT gateway) share its quota, which is why it is
generous: a person completes a sign-in within a minute or two, far fewer than ``per_source``
start in that time, and no one is refused, at worst asked to start again.

The bookkeeping is in memory, bounded to ``max_sources`` addresses (least recently seen dropped
first), and per process: with several replicas each keeps its own quota.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque


class SignInQuota:
    def __init__(self, *, per_source: int = 50, max_sources: int = 10_000) -> None:
        if per_source < 1 or max_sources < 1:
            raise ValueError("a sign-in quota needs per_source >= 1 and max_sources >= 1")
        self.per_source = per_source
        self._max_sources = max_sources
        self._by_source: OrderedDict[str, deque[str]] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, source: str, state_hash: str) -> list[str]:
        """Count a new sign-in of ``source``; the state hashes of its sign-ins it pushes out."""
        with self._lock:
            under_way = self._by_source.get(source)
            if under_way is None:
                under_way = self._by_source[source] = deque()
                while len(self._by_source) > self._max_sources:
                    self._by_source.popitem(last=False)
            self._by_source.move_to_end(source)
            under_way.append(state_hash)
            pushed_out = []
            while len(under_way) > self.per_source:
                pushed_out.append(under_way.popleft())
            return pushed_out
