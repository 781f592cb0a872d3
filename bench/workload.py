"""What the benchmarks measure with: account sizes and upstream bodies.

The large account of the issue: 1,000 models, 2,000 users, every usage name,
asset kind and NSFW label of the demo generator. Served to the running exporter
by the loopback fake, its month-to-date body is what upstream would send today
(granularity chosen by the window length, as the API does). The refresh figures
use a fixed body instead, so that they do not depend on the day of the month:
the month-to-date window as of :data:`REFRESH_END`, at hourly points, which is
just under the API's 6 MiB response limit for the large account.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from exporter.core.period import PeriodWindow
from exporter.upstream.demo import DemoAccount

API_LIMIT_BYTES = 6 * 1024 * 1024
API_KEYS = 6  # of the demo generator: users that are API keys, on top of `users`
REFRESH_START = datetime(2026, 1, 1, tzinfo=timezone.utc)
REFRESH_END = datetime(2026, 1, 7, 12, tzinfo=timezone.utc)
REFRESH_GRANULARITY = "1h"


@dataclass(frozen=True)
class Sizes:
    """The knobs of one benchmark run (full or quick)."""

    models: int  # the large account
    users: int
    scaling_models: tuple[int, ...]
    latency_requests: int  # sequential requests to each of the floor and the exporter
    scrapers: int
    load_seconds: float
    loadgen_processes: int
    refresh_repeats: int
    startup_repeats: int


FULL = Sizes(models=1000, users=2000, scaling_models=(10, 100, 1000, 3000),
             latency_requests=400, scrapers=64, load_seconds=20.0,
             loadgen_processes=2, refresh_repeats=7, startup_repeats=7)
QUICK = Sizes(models=100, users=200, scaling_models=(10, 30, 100),
              latency_requests=40, scrapers=64, load_seconds=2.0,
              loadgen_processes=2, refresh_repeats=3, startup_repeats=2)


def account(models: int, users: int, granularity: str | None = None) -> DemoAccount:
    """A simulated account of this size (every usage name, asset kind and NSFW label)."""
    return DemoAccount(models=models, users=users, api_keys=API_KEYS, granularity=granularity)


def refresh_window() -> PeriodWindow:
    return PeriodWindow(REFRESH_START, REFRESH_END)


def refresh_body(models: int, users: int) -> bytes:
    """The fixed upstream body of the refresh figures, as the fake would send it."""
    demo = account(models, users, REFRESH_GRANULARITY)
    window = refresh_window()
    return json.dumps(demo.response(window.start, window.end),
                      separators=(",", ":")).encode()


def accounts_file(directory: Path, count: int, key: str, secret: str) -> Path:
    """A configuration of *count* accounts with *key* and *secret*, each with a project
    of its own (``projectIds``: its upstream calls can be told apart), for the month."""
    path = directory / "accounts.yml"
    path.write_text(json.dumps({"period": "month", "accounts": [
        {"name": f"account-{index:05d}", "api_key": key, "api_secret": secret,
         "project_ids": [f"proj_{index:05d}"]} for index in range(count)]}))
    return path
