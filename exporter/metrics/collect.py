"""The one entry of every family: what a scrape shows of the accounts, as a collector.

The server renders it with the exporter's own series (``own=`` its registry),
the backfill without: the business families are built in one place for both,
with the same names, types, labels and ``_created``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from exporter.core.team import TeamView
from exporter.core.values import AccountView
from exporter.metrics.business import CollectorOptions, business_families
from exporter.metrics.own import folded_family
from exporter.metrics.team import endpoint_up_family, team_families


class AccountsCollector:
    """The families of *views* at wall-clock time *now*, as a prometheus_client collector.

    *with_created* adds each counter's ``_created`` (the period start), which
    is meant for OpenMetrics: in the Prometheus text format it would be one more
    gauge series per counter. With *own*, the exporter's own series follow: how
    many ids each account folded, then everything registered on *own*.
    """

    def __init__(self, views: Sequence[AccountView], now: float, options: CollectorOptions, *,
                 own: CollectorRegistry | None = None, with_created: bool = True,
                 teams: Sequence[TeamView] = ()) -> None:
        self._views = views
        self._teams = teams
        self._now = now
        self._options = options
        self._own = own
        self._with_created = with_created

    def collect(self) -> Iterator[Metric]:
        yield from business_families(self._views, self._now, self._options,
                                     with_created=self._with_created)
        if self._teams:
            yield from team_families(self._teams, self._now, self._options.team_max_stale)
        if self._own is not None:
            yield from own_families(self._views, self._teams, self._own)


def own_families(views: Sequence[AccountView], teams: Sequence[TeamView],
                 own: CollectorRegistry) -> Iterator[Metric]:
    """The exporter's own families: how many ids each account folded, which endpoints
    answered, then everything registered on *own*."""
    yield folded_family(views)
    yield endpoint_up_family(views, teams)
    yield from own.collect()


class OwnCollector:
    """:func:`own_families` as a prometheus_client collector."""

    def __init__(self, views: Sequence[AccountView], teams: Sequence[TeamView],
                 own: CollectorRegistry) -> None:
        self._views = views
        self._teams = teams
        self._own = own

    def collect(self) -> Iterator[Metric]:
        return own_families(self._views, self._teams, self._own)
