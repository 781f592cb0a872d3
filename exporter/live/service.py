"""Wiring: one refresher per configured account, a shared client, a renderer.

This is where the data flow of the package is assembled:
config -> client -> models -> cache -> collector -> exposition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
from prometheus_client import CollectorRegistry

from exporter.config.settings import Settings
from exporter.core.durations import format_duration
from exporter.core.period import monotonic_clock, wall_clock
from exporter.core.values import AccountView
from exporter.live.scheduler import (
    AccountRefresher,
    RefreshPolicy,
    Spawn,
    limit_concurrency,
    refresh_interval,
    spawn_thread,
)
from exporter.metrics.business import CollectorOptions
from exporter.metrics.exposition import ExpositionRenderer
from exporter.metrics.own import Telemetry
from exporter.upstream.client import UsageClient

log = logging.getLogger("exporter")

# Refreshes of different accounts running at once: enough to keep two cores and
# the network busy, few enough not to hit upstream with every account together.
MAX_CONCURRENT_REFRESHES = 4


class UsageExporter:
    """Everything a running exporter holds; HTTP handlers only talk to this."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], float] = monotonic_clock,
                 wall: Callable[[], float] = wall_clock,
                 spawn: Spawn = spawn_thread) -> None:
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=False)
        self.telemetry = Telemetry(self.registry, [a.name for a in settings.accounts])
        self.client = UsageClient(settings.api_url, settings.upstream_timeout,
                                  transport=transport, record=self.telemetry.record_request,
                                  monotonic=clock, wall=wall, ca_file=settings.upstream_ca_file)
        limited = limit_concurrency(spawn, MAX_CONCURRENT_REFRESHES)
        policy = RefreshPolicy(
            ttl=settings.cache_ttl, period=settings.period,
            anchor_day=settings.period_anchor_day,
            max_requests_per_hour=settings.max_requests_per_hour,
            max_models=settings.max_models, max_users=settings.max_users)
        self.refreshers = [
            AccountRefresher(
                account, self.client.fetch_window, self.telemetry, policy,
                clock=clock, wall=wall, spawn=limited)
            for account in settings.accounts
        ]
        self.renderer = ExpositionRenderer(
            self.views, self.registry,
            CollectorOptions(max_stale=settings.cache_max_stale, period=settings.period,
                             user_identity=settings.user_identity),
            wall=wall, telemetry_generation=lambda: self.telemetry.generation)
        self._clock = clock

    def views(self) -> list[AccountView]:
        """What every account currently serves (triggers nothing)."""
        return [r.view for r in self.refreshers]

    def ttl_limited_by_cap(self) -> float | None:
        """The refresh interval the hourly cap allows, when it is longer than the TTL."""
        settings = self.settings
        interval = refresh_interval(settings.cache_ttl, settings.max_requests_per_hour)
        return interval if interval > settings.cache_ttl else None

    def cap_notice(self) -> str | None:
        """One line when the hourly cap makes refreshes rarer than the TTL, else None."""
        ttl = self.settings.cache_ttl
        slower = {r.account.name: r.view.refresh_interval for r in self.refreshers
                  if (r.view.refresh_interval or 0) > ttl}
        if not slower:
            start_up = self.ttl_limited_by_cap()
            if start_up is None:
                return None
            slower = {"every account": start_up}
        each = ", ".join(f"{name} every {format_duration(round(seconds))}"
                         for name, seconds in slower.items() if seconds is not None)
        return (f"--cache.ttl={format_duration(ttl)} cannot be met with "
                f"--upstream.max-requests-per-hour={self.settings.max_requests_per_hour}: "
                f"refreshes {each}")

    def start(self) -> None:
        """Start the first refresh of every account, so that readiness comes without a scrape."""
        interval = self.ttl_limited_by_cap()
        if interval is not None:
            log.warning("the TTL cannot be met with the hourly cap", extra={"fields": {
                "cache_ttl": format_duration(self.settings.cache_ttl),
                "max_requests_per_hour": self.settings.max_requests_per_hour,
                "refresh_interval": format_duration(interval),
                "hint": "each account is refreshed at most this often; raise "
                        "--upstream.max-requests-per-hour or --cache.ttl"}})
        for refresher in self.refreshers:
            refresher.maybe_refresh()

    def prepare_scrape(self, wait: float) -> None:
        """Trigger due refreshes; wait (at most *wait* seconds in all) for first data."""
        now = self._clock()
        deadline = now + wait
        for refresher in self.refreshers:
            if refresher.due(now):
                refresher.maybe_refresh()
        for refresher in self.refreshers:
            if not refresher.view.attempted:
                refresher.wait_first_attempt(max(0.0, deadline - self._clock()))

    def ready(self) -> bool:
        """True once every account has had its first refresh attempt."""
        return all(r.view.attempted for r in self.refreshers)

    def close(self) -> None:
        self.client.close()
