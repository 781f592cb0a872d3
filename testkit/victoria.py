"""A real VictoriaMetrics (single node) on loopback, started by a test, and its HTTP API.

Debian's ``victoria-metrics`` package (1.79 in Debian 12 and 13; scripts/test.sh
installs it): one binary that stores what it is sent by Prometheus remote write
(``/api/v1/write``) or in Prometheus' text format (``/api/v1/import/prometheus``),
and answers Prometheus' query API in MetricsQL, so the queries of
:class:`testkit.prometheus.QueryAPI` serve both.

What differs from Prometheus, for a test that reads both the same way:

- Rows sent are buffered for about a second before a query sees them:
  :meth:`VictoriaMetrics.force_flush` makes them searchable at once.
- By default a query does not see the last 30 s (``-search.latencyOffset``), and
  range queries are answered from a cache that a backfill of old samples may
  leave stale: both are switched off here.
- Samples older than ``-retentionPeriod`` are dropped, and deleted: a year of
  history and more is kept here.
- In a range query, an instant selector (``x``, no range) looks back as far as
  the series' own interval between samples (a day, for a backfill: a staircase
  where Prometheus, which looks back 5 minutes, has one point a day), unless
  ``-search.maxStalenessInterval`` says otherwise; an instant query looks back
  5 minutes. Range selectors (``x[1d]``) read the same samples as Prometheus 3:
  a window open at its start, closed at its end.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from testkit.processes import ChildProcess, Processes, clean_environment, free_port
from testkit.prometheus import QueryAPI
from testkit.repo import IN_CI

BINARY = "victoria-metrics"
START_TIMEOUT = 30.0
# More than a year back: a year of history and the periods before it.
RETENTION = "2y"
# Every sample visible to the next query: no response cache (a backfill writes into
# ranges it may have cached) and no latency offset (it hides the last 30 s).
FLAGS = (f"-retentionPeriod={RETENTION}", "-search.disableCache", "-search.latencyOffset=0s")


def require_victoria_metrics() -> str:
    """The path of the ``victoria-metrics`` binary: skipped on a laptop without it, a
    failure in CI, which must prove everything."""
    path = shutil.which(BINARY)
    if path is None:
        message = (f"{BINARY} is not installed (scripts/test.sh installs Debian's "
                   "victoria-metrics package)")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


class VictoriaMetrics(QueryAPI):
    """One VictoriaMetrics server and its HTTP API."""

    @property
    def write_url(self) -> str:
        """Where Prometheus remote write sends to."""
        return f"{self.url}/api/v1/write"

    def import_prometheus(self, text: str) -> None:
        """Store samples written in Prometheus' text format, each with its timestamp in
        milliseconds (``name{labels} value 1735689600000``), searchable at once."""
        response = httpx.post(f"{self.url}/api/v1/import/prometheus", content=text,
                              timeout=30, trust_env=False)
        assert response.status_code == 204, f"{self.name}: {response.status_code} {response.text}"
        self.force_flush()

    def force_flush(self) -> None:
        """Make every sample received so far searchable now (``/internal/force_flush``)."""
        response = httpx.get(f"{self.url}/internal/force_flush", timeout=30, trust_env=False)
        assert response.status_code == 200, f"{self.name}: {response.status_code} {response.text}"


def start_victoria_metrics(processes: Processes, data: Path, *flags: str) -> VictoriaMetrics:
    """A VictoriaMetrics server storing in *data*, on a free loopback port, once it is
    healthy; *flags* add to or override :data:`FLAGS` (a later flag wins)."""
    binary = require_victoria_metrics()
    port = free_port()
    argv = [binary, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
            "-loggerLevel=WARN", *FLAGS, *flags]
    process = processes.add(ChildProcess(argv, clean_environment(), name=BINARY, port=port))
    process.wait_ready("/health", timeout=START_TIMEOUT, interval=0.2)
    return VictoriaMetrics(process, f"http://127.0.0.1:{port}")
