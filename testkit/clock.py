"""The time and the threads the exporter is given in tests: a clock moved only by the
test (or by the code's own sleeps), and a spawner that runs each refresh in a real
thread, as production does."""

from __future__ import annotations

import threading
from collections.abc import Callable


class FakeClock:
    """Monotonic and wall clocks that move only when the test moves them.

    ``seconds`` is the time elapsed since the start; the wall clock starts at
    *wall_start* (a Unix timestamp), the monotonic one at an arbitrary 1000.
    :meth:`sleep` is for code that waits: it moves both at once, and keeps the delay.
    """

    def __init__(self, wall_start: float) -> None:
        self.wall_start = wall_start
        self.seconds = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return 1000.0 + self.seconds

    def wall(self) -> float:
        return self.wall_start + self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds

    def sleep(self, seconds: float) -> None:
        """What the code under test calls to wait: no waiting, the clocks move on."""
        self.sleeps.append(seconds)
        self.advance(seconds)


class ThreadSpawn:
    """Runs each piece of work in a new daemon thread, and keeps the last one to join."""

    def __init__(self) -> None:
        self.last: threading.Thread | None = None

    def __call__(self, work: Callable[[], None]) -> None:
        self.last = threading.Thread(target=work, name="refresh", daemon=True)
        self.last.start()

    def join(self, timeout: float = 30.0) -> None:
        """Wait for the last thread; fails if it is still running after *timeout* s."""
        assert self.last is not None, "no refresh was started"
        self.last.join(timeout)
        assert not self.last.is_alive(), f"the refresh did not end within {timeout:g}s"
