"""Waiting for a condition with a deadline: tests (and the benchmark) never sleep a
fixed time. Free of pytest, so that ``bench/`` can use it too."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str,
             describe: Callable[[], str] = lambda: "", *, interval: float = 0.02) -> T:
    """Poll *condition* until it returns something truthy, and return that.

    Raises :class:`AssertionError` naming *what* (and ``describe()``) at the
    deadline; *condition* may raise to stop waiting early (a process that died).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = describe()
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}"
                                 + (f"\n{detail}" if detail else ""))
        time.sleep(interval)
