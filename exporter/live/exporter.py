"""The running exporter's data side: every account's refresher, its own series, ``/metrics``.

What the web side asks of it: the views to serve, whether it is ready, a
scrape's preparation (due refreshes, the first data), and the notice for the
landing page when the hourly cap slows refreshes down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from exporter.config.settings import Settings
from exporter.core.durations import format_duration
from exporter.core.period import monotonic_clock
from exporter.core.values import AccountView
from exporter.live.scheduler import AccountRefresher, refresh_interval
from exporter.live.team import TeamRefresher
from exporter.metrics.exposition import Exposition
from exporter.metrics.own import Telemetry
from exporter.upstream.client import UsageClient

log = logging.getLogger("exporter")


@dataclass
class UsageExporter:
    """Everything a running exporter holds; the HTTP handlers only talk to this.

    Built by :func:`exporter.live.service.build_exporter`.
    """

    settings: Settings
    registry: CollectorRegistry  # the exporter's own series
    telemetry: Telemetry
    client: UsageClient
    refreshers: list[AccountRefresher]
    exposition: Exposition  # /metrics of views() and the registry
    clock: Callable[[], float] = monotonic_clock
    teams: list[TeamRefresher] = field(default_factory=list)  # one per account
    # /probe?account=NAME of each account this process serves.
    probes: dict[str, Exposition] = field(default_factory=dict)
    # Accounts of the configuration that other shards serve: their shard.
    elsewhere: dict[str, int] = field(default_factory=dict)

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
        for team in self.teams:
            team.maybe_refresh()

    def prepare_scrape(self, wait: float) -> None:
        """Trigger due refreshes; wait (at most *wait* seconds in all) for first data."""
        now = self.clock()
        deadline = now + wait
        # The accounts due the longest first: they take the first free refresh slots.
        due = [refresher for refresher in self.refreshers if refresher.due(now)]
        for refresher in sorted(due, key=AccountRefresher.due_since):
            refresher.maybe_refresh()
        # After usages: when the hourly cap is short, usages take the room first.
        for team in self.teams:
            if team.due(now):
                team.maybe_refresh()
        for refresher in self.refreshers:
            if not refresher.view.attempted:
                refresher.wait_first_attempt(max(0.0, deadline - self.clock()))

    def prepare_probe(self, account: str, wait: float) -> None:
        """:meth:`prepare_scrape` for one account's ``/probe``."""
        now = self.clock()
        for refresher, team in zip(self.refreshers, self.teams, strict=True):
            if refresher.account.name != account:
                continue
            if refresher.due(now):
                refresher.maybe_refresh()
            if team.due(now):
                team.maybe_refresh()
            if not refresher.view.attempted:
                refresher.wait_first_attempt(wait)

    def ready(self) -> bool:
        """True once every account has had its first refresh attempt."""
        return all(r.view.attempted for r in self.refreshers)

    def close(self) -> None:
        self.client.close()
