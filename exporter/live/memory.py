"""Giving the memory freed by a refresh back to the operating system.

A refresh parses a response of up to 6 MB and drops it. glibc's malloc keeps
most of what was freed, for reuse: the process stays tens of MiB above what it
holds. ``malloc_trim(0)`` returns the free pages at the top of the heap and
those inside it. Elsewhere (musl, macOS, Windows) this is a no-op.

Kept because it decides the steady-RSS goal (<= 90 MiB, docs/performance.md):
after a refresh of the 6 MB benchmark body and both renders, ``python -m
bench.refresh memory`` measured 69-70 MiB with the trim and 94-95 MiB without.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None when the C library has none."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here, not at start-up: only a refresh needs it

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Hand free heap memory back to the system; whether it could be asked to."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
