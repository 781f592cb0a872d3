"""Exit codes, and the one place where a program's outcome or error becomes one.

A program returns True when it did all it was asked and False when it ran but
something failed; bad input is a :class:`ConfigError` raised before anything
runs. :func:`run_program` turns each into a code and, for an error, one line
on stderr; nothing else in the package writes an exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from exporter.core.errors import ConfigError, StartupError

EXIT_OK = 0
# It ran, and something failed: check found a problem, periods are missing,
# the listen address is taken.
EXIT_FAILURE = 1
# Invalid configuration or arguments: one line on stderr that names the setting.
EXIT_CONFIG = 2
# Interrupted (Ctrl-C, SIGINT): 128 + 2, as shells report it.
EXIT_INTERRUPTED = 130

PROGRAM = "scenario-exporter"


def run_program(program: Callable[[], bool], stderr: TextIO | None = None) -> int:
    """Run *program*; its exit code, after one line on *stderr* for an error."""
    stderr = stderr or sys.stderr
    try:
        return EXIT_OK if program() else EXIT_FAILURE
    except ConfigError as exc:
        stderr.write(f"{PROGRAM}: {exc}\n")
        return EXIT_CONFIG
    except StartupError as exc:
        stderr.write(f"{PROGRAM}: {exc}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
