"""How many standby runtimes the local backend keeps: FIREBOX_STANDBY of them, raised after a
burst of container starts to the burst's size (up to FIREBOX_STANDBY_MAX), so the next burst
like it takes standbys instead of launching cold, and back once none that large has come for
KEEP_SECONDS. The extra ones are launched only once the burst is over (QUIET_SECONDS without a
start): launched during it, they would compete with its own launches for the cores. Each
standby is an idle process of about 30 MB."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

BURST_SECONDS = 10.0  # starts this close together count as one burst (launches are paced)
QUIET_SECONDS = 1.0  # a burst is over once no container started for this long
KEEP_SECONDS = 600.0  # how long the pool stays sized for a burst that does not come again


class StandbyTarget:
    def __init__(self, base: int, most: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base = base
        self.most = max(base, most) if base else 0  # FIREBOX_STANDBY=0: none, ever
        self.clock = clock
        self.recent: deque[float] = deque()  # starts within the last BURST_SECONDS
        self.peak = 0
        self.peak_at = 0.0
        self.last = float("-inf")  # the last start

    def started(self) -> None:
        """A container is starting (from a standby or not)."""
        now = self.last = self.clock()
        self.recent.append(now)
        while self.recent and now - self.recent[0] > BURST_SECONDS:
            self.recent.popleft()
        if len(self.recent) >= self.peak or now - self.peak_at > KEEP_SECONDS:
            self.peak, self.peak_at = len(self.recent), now

    def size(self) -> int:
        now = self.clock()
        if now - self.peak_at > KEEP_SECONDS:
            self.peak = 0
        if now - self.last < QUIET_SECONDS:
            return min(self.most, self.base)  # a burst is under way
        return min(self.most, max(self.base, self.peak))
