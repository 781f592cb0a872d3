"""Soak: thousands of refresh cycles of one exporter, looking for leaks and drift.

One :class:`UsageExporter` (real refresh threads, real HTTP server, real
logging at debug level into /dev/null) runs against the loopback
:class:`FakeUpstream` on a fake clock that moves one hour per cycle, so the
data keeps growing, monthly periods roll over every ~720 cycles, models and
users come and go, and fault episodes (500, 429, 401, 403, garbage, invalid,
drift, oversized, gateway-too-large, empty) come around regularly. Every cycle:
one refresh, one scrape over HTTP that must succeed and parse, ``scenario_up`` as the mode says,
served counters that never go down within a period, business series withdrawn once
the data is older than ``cache.max-stale``. After every rollover the exporter
serves exactly what a freshly started one does, and at the end RSS growth,
thread count and series count are checked.

Size: ``SOAK_CYCLES`` (default 3000); a bound on RSS growth: ``SOAK_MAX_RSS_MIB``.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from pydantic import SecretStr

from exporter.config.settings import Settings
from exporter.core.account import AccountConfig
from exporter.core.logs import configure_logging
from exporter.core.period import next_period_start, period_start
from exporter.live.app import create_app
from exporter.live.exporter import UsageExporter
from exporter.live.service import build_exporter
from exporter.upstream.demo import DemoAccount
from exporter.web.server import create_server, serve_in_thread
from testkit.clock import FakeClock, ThreadSpawn
from testkit.exposition import families, is_openmetrics
from testkit.fake_upstream import FakeUpstream
from testkit.golden import OPENMETRICS
from testkit.oracle import model_totals
from testkit.served import TEAM_SERIES
from testkit.waiting import wait_for

# 1500 cycles take about a minute: most of it is waiting on the fake upstream, whose
# headers and body go out in two writes (Nagle's algorithm meets delayed ACKs).
CYCLES = int(os.environ.get("SOAK_CYCLES", "3000"))
# Long enough to see every fault mode and a rollover once (new label values, code paths).
WARM_UP = max(1, min(400, CYCLES // 3))
# Measured: -0.1 to 2.4 MiB after the warm-up for 400 to 2500 cycles (allocator noise:
# the number of live objects stays flat). At 1500 cycles, a leak of 8 KiB per cycle fails it.
MAX_RSS_GROWTH_MIB = float(os.environ.get("SOAK_MAX_RSS_MIB", "8"))
MAX_NEW_OBJECTS = 200
API_KEY = "soak-key"
API_SECRET = "soak-secret-value"
START = datetime(2026, 1, 30, 0, 30, tzinfo=timezone.utc)
STEP = 3600.0  # > cache.ttl and > the longest back-off: every cycle refreshes
MAX_STALE = 7200.0
SUCCESS_MODES = frozenset({"ok", "drift", "oversized", "gateway-too-large", "empty"})
# A fault episode every 40 cycles, 1 to 4 cycles long, each mode in turn.
EPISODE_EVERY = 40
FAULTS = ("500", "429", "garbage", "drift", "401", "oversized", "invalid", "empty", "403",
          "gateway-too-large")
# Exporter series whose label values are a closed set (no growth with time).
UPSTREAM_CODES = {"200", "401", "403", "413", "429", "500", "502", "invalid_response"}


class ChangingAccount(DemoAccount):
    """A demo account whose models and users come and go; the visible ones keep their
    values, so the fake's truth still holds for them."""

    hidden: frozenset[str] = frozenset()

    def response(self, start: datetime, end: datetime, sections: Sequence[str] | None = None,
                 *, drop_zero_points: bool = True) -> dict[str, Any]:
        body = super().response(start, end, sections, drop_zero_points=drop_zero_points)
        hidden = self.hidden
        if hidden:
            body["modelUsages"] = [r for r in body.get("modelUsages", [])
                                   if r["modelId"] not in hidden]
            body["consumption"] = [r for r in body.get("consumption", [])
                                   if r["userId"] not in hidden]
            for kind in ("models", "users"):
                body["entities"][kind] = [e for e in body["entities"][kind]
                                          if e["id"] not in hidden]
        return body


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Scrape:
    """One parsed ``/metrics`` page."""

    openmetrics: bool
    samples: Series = field(default_factory=dict)

    def values(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}

    def value(self, name: str) -> float | None:
        found = list(self.values(name).values())
        assert len(found) <= 1, name
        return found[0] if found else None

    def business(self) -> Series:
        """Per-account series of usages (and their _created): not the exporter's own, nor
        the team's, which are read on their own interval and clock."""
        return {key: v for key, v in self.samples.items()
                if key[0].startswith("scenario_") and not key[0].startswith("scenario_exporter_")
                and key[0] not in TEAM_SERIES}

    def counters(self) -> Series:
        return {key: v for key, v in self.business().items() if key[0].endswith("_total")}


def parse(body: bytes, content_type: str) -> Scrape:
    """Parse a body with prometheus_client's parser for its format."""
    openmetrics = is_openmetrics(content_type)
    if not openmetrics:
        assert content_type.startswith("text/plain; version=0.0.4"), content_type
    scrape = Scrape(openmetrics)
    for family in families(body.decode("utf-8"), openmetrics):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in scrape.samples, f"duplicate series {key}"
            assert math.isfinite(sample.value) or sample.name.endswith("_bucket"), sample
            scrape.samples[key] = sample.value
    return scrape


def scrape_http(client: httpx.Client, cycle: int) -> Scrape:
    """GET /metrics, rotating formats and compression; it must succeed.

    OpenMetrics one scrape in four: prometheus_client's parser for it is the
    slowest part of a cycle, and it parses the same series as the text one.
    """
    accept = OPENMETRICS if cycle % 4 == 1 else None
    gzipped = (cycle // 4) % 2 == 0
    headers = {"Accept-Encoding": "gzip" if gzipped else "identity"}
    if accept:
        headers["Accept"] = accept
    # Read the raw bytes: httpx would decode gzip itself, and we check the stream.
    with client.stream("GET", "/metrics", headers=headers) as response:
        assert response.status_code == 200
        raw = b"".join(response.iter_raw())
        content_type = response.headers["Content-Type"]
        assert (response.headers.get("Content-Encoding") == "gzip") == gzipped
    return parse(gzip.decompress(raw) if gzipped else raw, content_type)


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def mode_for(cycle: int, forced: dict[int, str]) -> str:
    """The fake's mode during *cycle*: mostly ok, with a fault episode every 40 cycles."""
    if cycle in forced:
        return forced[cycle]
    episode, slot = divmod(cycle, EPISODE_EVERY)
    length = 1 + episode % 4
    if EPISODE_EVERY - length <= slot:
        return FAULTS[episode % len(FAULTS)]
    return "ok"


def hidden_for(cycle: int, models: list[str], users: list[str]) -> frozenset[str]:
    """Which models and users upstream leaves out during *cycle* (they come and go)."""
    phase = (cycle // 170) % 4
    if phase == 1:
        return frozenset(models[-3:] + users[-2:])
    if phase == 2:
        return frozenset(models[:2] + users[:1])
    return frozenset()


def make_exporter(url: str, clock: FakeClock, spawn: Callable[[Callable[[], None]], None]
                  ) -> UsageExporter:
    # Calendar months: the rollovers this test drives are the calendar's.
    settings = Settings(
        api_url=url, listen_address="127.0.0.1:0", cache_ttl=300, cache_max_stale=MAX_STALE,
        period="month",
        upstream_timeout=30, max_requests_per_hour=1000, max_models=100, max_users=6,
        accounts=(AccountConfig(name="soak", api_key=API_KEY, api_secret=SecretStr(API_SECRET),
                                budget_creative_units=50_000.0),))
    return build_exporter(settings, clock=clock.monotonic, wall=clock.wall, spawn=spawn)


def fresh_exporter_series(url: str, clock: FakeClock, openmetrics: bool) -> Series:
    """What a freshly started exporter serves now (its business series)."""
    exporter = make_exporter(url, clock, lambda work: work())
    try:
        exporter.start()
        headers, body = exporter.exposition.respond(OPENMETRICS if openmetrics else None, None)
        content_type = dict(headers)["Content-Type"]
        return parse(body, content_type).business()
    finally:
        exporter.close()


@contextlib.contextmanager
def debug_logging_to_devnull() -> Iterator[None]:
    """The production log setup at debug level, written to /dev/null, restored afterwards.

    Entered inside the test, not in a fixture: pytest adds its capturing handlers
    when the test body starts, and those keep every record until the test ends
    (1.5 MiB per thousand cycles, which would read as a leak).
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        configure_logging("debug", "logfmt", {API_SECRET}, stream=devnull)
        try:
            yield
        finally:
            for handler in list(root.handlers):
                root.removeHandler(handler)
            for handler in handlers:
                root.addHandler(handler)
            root.setLevel(level)


@dataclass
class SoakReport:
    """What the run measured, printed at the end (``pytest -s``) and asserted on."""

    cycles: int = 0
    refreshes_failed: int = 0
    rollovers: int = 0
    checkpoints: int = 0
    withdrawn_scrapes: int = 0
    rss_after_warm_up: int = 0
    rss_end: int = 0
    objects_after_warm_up: int = 0
    objects_end: int = 0
    series_max: int = 0
    series_end: int = 0
    series_fresh: int = 0


def test_soak_refresh_cycles_with_rollovers_and_faults() -> None:
    with debug_logging_to_devnull():
        run_soak()


def run_soak() -> None:
    """The soak itself (see the module docstring)."""
    threads_before = threading.active_count()
    account = ChangingAccount(models=8, users=5, api_keys=2)
    sample = account.response(START, START + timedelta(hours=1), ["model-usages"])
    model_ids = [m["id"] for m in sample["entities"]["models"]]
    user_ids = [u["id"] for u in sample["entities"]["users"]]
    fake = FakeUpstream(account, API_KEY, API_SECRET).start()
    fake.state.max_window_seconds = 8 * 86400  # "oversized": split into a few requests
    clock, spawn = FakeClock(START.timestamp()), ThreadSpawn()
    exporter = make_exporter(fake.url, clock, spawn)
    server = create_server("127.0.0.1:0", create_app(exporter))
    serve_in_thread(server)
    client = httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=30)
    refresher = exporter.refreshers[0]
    report = SoakReport()
    forced: dict[int, str] = {}
    previous: Series = {}
    previous_start: float | None = None
    current_period = period_start(START)
    last_success: float | None = None
    checkpoint_due = False
    try:
        for cycle in range(CYCLES):
            clock.seconds += STEP
            now = datetime.fromtimestamp(clock.wall(), timezone.utc)
            if period_start(now) != current_period:
                current_period = period_start(now)
                report.rollovers += 1
                checkpoint_due = True
                if report.rollovers % 2 == 0:
                    # The new period starts with upstream down, longer than max-stale.
                    forced.update({cycle + k: "500" for k in range(3)})
            mode = mode_for(cycle, forced)
            fake.set_mode(mode)
            account.hidden = hidden_for(cycle, model_ids, user_ids)

            requests_before = fake.request_count
            assert refresher.maybe_refresh(), f"cycle {cycle}: no refresh started"
            spawn.join()
            assert fake.request_count > requests_before
            with fake.state.lock:
                fake.state.requests.clear()  # the fake's own log would grow for ever
            succeeded = mode in SUCCESS_MODES
            if succeeded:
                last_success = clock.wall()
            else:
                report.refreshes_failed += 1

            scrape = scrape_http(client, cycle)
            report.series_max = max(report.series_max, len(scrape.samples))
            assert scrape.value("scenario_up") == (1.0 if succeeded else 0.0), (cycle, mode)
            counters = scrape.counters()
            fresh = last_success is not None and clock.wall() - last_success <= MAX_STALE
            if not fresh:
                assert not counters, f"cycle {cycle}: stale data still served"
                report.withdrawn_scrapes += 1
            elif mode == "ok":
                assert counters, f"cycle {cycle}: no business series"
            # Within a period (the exported period start), a counter that is served
            # never goes down where upstream's sums only grow: sums of points. An id
            # upstream stops reporting ("empty", hidden ids) is served as gone, and
            # the per-user consumption, which the fake splits by the shares of the
            # users it shows, is revised up and down: both served as upstream says.
            start = scrape.value("scenario_period_start_timestamp_seconds")
            if counters:
                if start == previous_start:
                    for key, before in previous.items():
                        if not key[0].startswith("scenario_user_"):
                            assert counters.get(key, before) >= before, (cycle, key)
                previous, previous_start = counters, start

            if checkpoint_due and succeeded:
                # First data of a new period: exactly what a new exporter would serve.
                checkpoint_due = False
                report.checkpoints += 1
                assert start == current_period.timestamp()
                assert scrape.business() == \
                    fresh_exporter_series(fake.url, clock, scrape.openmetrics), cycle
                check_truth(scrape, account, current_period, now, mode)

            if cycle in (WARM_UP - 1, CYCLES - 1):
                # Measured at the same point of a cycle, with the same test objects alive.
                gc.collect()
                rss, objects = rss_bytes(), len(gc.get_objects())
                if cycle == WARM_UP - 1:
                    report.rss_after_warm_up, report.objects_after_warm_up = rss, objects
                else:
                    report.rss_end, report.objects_end = rss, objects
            # Threads end with their work: a handful at most are alive at any time.
            assert threading.active_count() <= threads_before + 8, threading.enumerate()
            report.cycles += 1

        # Finish where the series count is predictable: the next period, all visible, ok.
        clock.seconds = next_period_seconds(clock) + STEP
        fake.set_mode("ok")
        account.hidden = frozenset()
        assert refresher.maybe_refresh()
        spawn.join()
        final = scrape_http(client, 0)
        assert final.value("scenario_up") == 1.0
        expected = fresh_exporter_series(fake.url, clock, openmetrics=False)
        assert final.business() == expected
        report.series_end, report.series_fresh = len(final.samples), len(expected)
        codes = {dict(labels)["code"]
                 for labels in final.values("scenario_exporter_upstream_requests_total")}
        assert codes <= UPSTREAM_CODES, codes
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        exporter.close()
        fake.stop()

    wait_for(lambda: threading.active_count() <= threads_before, 10, "the threads to end",
             lambda: f"threads left behind: {threading.enumerate()}")
    growth_mib = (report.rss_end - report.rss_after_warm_up) / 2**20
    print(f"\nsoak: {report}, RSS growth after warm-up {growth_mib:.2f} MiB")
    assert report.rollovers >= CYCLES // 744 and report.checkpoints == report.rollovers
    if CYCLES >= 200:  # the schedule has had faults long enough to withdraw the data
        assert report.refreshes_failed > 0 and report.withdrawn_scrapes > 0
    assert growth_mib < MAX_RSS_GROWTH_MIB, f"RSS grew by {growth_mib:.1f} MiB"
    # More exact than RSS: objects tracked by the garbage collector. After the warm-up
    # (every fault mode and a rollover seen once) a leak of one object per cycle shows.
    assert report.objects_end - report.objects_after_warm_up < MAX_NEW_OBJECTS


def next_period_seconds(clock: FakeClock) -> float:
    """Clock seconds at the start of the month after the current one."""
    start = period_start(datetime.fromtimestamp(clock.wall(), timezone.utc))
    return next_period_start(start).timestamp() - START.timestamp()


def check_truth(scrape: Scrape, account: ChangingAccount, start: datetime, end: datetime,
                mode: str) -> None:
    """Exported model counters equal the fake's exact totals for the visible models."""
    if mode == "empty":
        return
    truth = model_totals(account, start, end)
    costs = {dict(labels)["model_id"]: value for labels, value in
             scrape.values("scenario_model_cost_creative_units_total").items()}
    jobs = {dict(labels)["model_id"]: value for labels, value in
            scrape.values("scenario_model_jobs_total").items()}
    visible = [m for m in truth if m not in account.hidden]
    assert visible
    for model_id in visible:
        assert costs[model_id] == truth[model_id]["cost"], model_id
        assert jobs[model_id] == truth[model_id]["jobs"], model_id
