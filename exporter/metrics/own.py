"""The exporter's own series: build info, upstream calls, refresh failures, revisions, folds.

Events are ordinary prometheus_client counters and histograms, registered on a
registry that the caller makes (never the global one). Label values known in
advance (each account, each failure reason) are created at start-up so that
``rate()`` sees their first increase. How many ids each account folded into
``__other__`` is read from the views at each scrape (:func:`folded_family`).
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from exporter import __version__
from exporter.core.errors import FailureReason
from exporter.core.values import AccountView

# The sections whose ids the cardinality caps fold into __other__ (exporter.core.ledger).
FOLDED_SECTIONS = ("models", "users")

# Upstream latency: Scenario answers in tens of ms to tens of seconds (large windows).
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)


class BuildInfo:
    """``scenario_exporter_build_info{version, python_version} 1``, as a collector."""

    def __init__(self) -> None:
        self._family = GaugeMetricFamily(
            "scenario_exporter_build_info",
            "Version of the exporter and of the Python running it.",
            labels=["version", "python_version"])
        self._family.add_metric([__version__, platform.python_version()], 1.0)

    def collect(self) -> Iterable[Metric]:
        return [self._family]


def folded_family(views: Sequence[AccountView]) -> GaugeMetricFamily:
    """``scenario_exporter_folded_series{account, section}``: ids folded into ``__other__``."""
    family = GaugeMetricFamily("scenario_exporter_folded_series",
                               "Entities folded into __other__ by the cardinality caps.",
                               labels=["account", "section"])
    for view in views:
        for section in FOLDED_SECTIONS:
            family.add_metric([view.account.name, section], float(view.folded.get(section, 0)))
    return family


class Telemetry:
    """Counters and histograms that the refresh path updates as things happen."""

    def __init__(self, registry: CollectorRegistry, accounts: Iterable[str]) -> None:
        # The process start as `_created` of every exporter counter is noise (one
        # more series each in the text format); prometheus_client only offers a
        # process-wide switch, which is idempotent.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        registry.register(BuildInfo())
        self.upstream_requests = Counter(
            "scenario_exporter_upstream_requests",
            "Upstream HTTP calls by status code (or timeout, connection_error, "
            "invalid_response).",
            ["account", "code"], registry=registry)
        self.upstream_duration = Histogram(
            "scenario_exporter_upstream_request_duration_seconds",
            "Latency of upstream HTTP calls.",
            ["account"], buckets=_LATENCY_BUCKETS, registry=registry)
        self.response_bytes = Gauge(
            "scenario_exporter_upstream_response_bytes",
            "Size of the last upstream response body (the API limit is 6 MB).",
            ["account"], registry=registry)
        self.refresh_failures = Counter(
            "scenario_exporter_refresh_failures",
            "Failed refreshes by reason.",
            ["account", "reason"], registry=registry)
        self.decreases = Counter(
            "scenario_exporter_upstream_decreases",
            "Downward revisions by upstream within a period: each id whose value went down, "
            "or that vanished, counts once.",
            ["account"], registry=registry)
        # Bumped after every change of a sample above: while it is unchanged, a
        # scrape is served the exposition rendered before (exporter/exposition.py).
        self._generation = 0
        self._lock = threading.Lock()
        for account in accounts:
            self.upstream_duration.labels(account)
            self.response_bytes.labels(account)
            self.decreases.labels(account)
            for reason in FailureReason:
                self.refresh_failures.labels(account, reason.value)

    def record_request(self, account: str, code: str, seconds: float,
                       body_bytes: int | None) -> None:
        """Count one upstream call; *body_bytes* is None when no body was read."""
        self.upstream_requests.labels(account, code).inc()
        self.upstream_duration.labels(account).observe(seconds)
        if body_bytes is not None:
            self.response_bytes.labels(account).set(body_bytes)
        self._changed()

    def count_failure(self, account: str, reason: FailureReason) -> None:
        """Count one failed refresh of *account*."""
        self.refresh_failures.labels(account, reason.value).inc()
        self._changed()

    def count_decreases(self, account: str, decreases: int) -> None:
        """Count downward revisions by upstream."""
        self.decreases.labels(account).inc(decreases)
        self._changed()

    def _changed(self) -> None:
        with self._lock:
            self._generation += 1

    @property
    def generation(self) -> int:
        """Changes whenever a sample has changed (read it before collecting)."""
        return self._generation
