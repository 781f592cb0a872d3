"""How politely upstream is asked: an hourly cap of requests, and one back-off after failures.

The live exporter and the backfill share both: neither may send more than
``--upstream.max-requests-per-hour`` calls per account in any sliding hour, and
after a failure both wait the same doubling, jittered delay (at least what a
429's ``Retry-After`` asks for). The live exporter skips a refresh when the cap
is reached; the backfill, a batch job, waits for room.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable

HOUR = 3600.0
# After the n-th failure in a row: 10 s, 20 s, 40 s ... capped at 30 min, each
# multiplied by a random factor in [0.5, 1] so that replicas spread out.
BACKOFF_BASE_SECONDS = 10.0
BACKOFF_CAP_SECONDS = 1800.0


def backoff_delay(failures: int, rng: random.Random, retry_after: float | None = None) -> float:
    """Seconds to wait after the *failures*-th failure in a row (1 for the first)."""
    delay: float = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (failures - 1))
    delay *= rng.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


class RequestCap:
    """At most *limit* upstream requests in any sliding hour."""

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._clock = clock
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._sent and now - self._sent[0] >= HOUR:
            self._sent.popleft()

    def try_acquire(self) -> bool:
        """Take one request from the budget, or say no."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            if len(self._sent) >= self._limit:
                return False
            self._sent.append(now)
            return True

    @property
    def limit(self) -> int:
        return self._limit

    def has_room(self, calls: int = 1) -> bool:
        """Whether *calls* requests would be allowed now (without taking them)."""
        with self._lock:
            self._expire(self._clock())
            return len(self._sent) + calls <= self._limit
