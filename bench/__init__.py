"""Benchmarks of scenario-exporter: scrape and refresh cost against their floors.

Every figure is measured as a ratio against its floor in the same run (shared
machines are noisy: absolute times drift, ratios hold). The exporter runs for
real, as ``python -m exporter`` against the loopback fake of the upstream API
(:mod:`tests.fake_upstream`), so the real client, cache, collector and HTTP
server are what is measured. Run ``python -m bench`` (full, a few minutes) or
``python -m bench --quick`` (small sizes, short durations; what CI runs).
"""

import sys
from pathlib import Path

# The benchmark uses the tests' helpers (one set: processes, the fake upstream,
# HTTP calls, waiting). They import each other by module name, as pytest puts
# ``tests/`` on the path, so the benchmark does the same.
_TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
