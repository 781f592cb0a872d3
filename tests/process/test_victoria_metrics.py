"""VictoriaMetrics, as the end-to-end tests use it (testkit.victoria): it keeps samples
from long ago and reads them back at once, and its MetricsQL takes a negative offset.

Samples go in through its import API in Prometheus' text format, which needs no
client of our own; the end-to-end tests push through remote write instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from testkit.processes import Processes
from testkit.victoria import VictoriaMetrics, start_victoria_metrics

DAY = 86400
SERIES = 'scenario_test_samples_total{account="studio"}'


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    with Processes() as processes:
        yield start_victoria_metrics(processes, tmp_path_factory.mktemp("victoria-metrics"))


@pytest.fixture(scope="module")
def day(victoria: VictoriaMetrics) -> int:
    """A UTC midnight 300 days ago, with a sample then (10) and a day later (25)."""
    midnight = (int(time.time()) // DAY - 300) * DAY
    victoria.import_prometheus(f"{SERIES} 10 {midnight * 1000}\n"
                               f"{SERIES} 25 {(midnight + DAY) * 1000}\n")
    return midnight


def values(victoria: VictoriaMetrics, expr: str, at: float) -> list[list[float]]:
    """The samples of each series of *expr* at *at*: a range vector's, or one value."""
    found = victoria.api("query", query=expr, time=f"{at:.3f}")
    if found["resultType"] == "matrix":
        return [[float(v) for _, v in series["values"]] for series in found["result"]]
    return [[float(series["value"][1])] for series in found["result"]]


def test_samples_from_300_days_ago_read_back_at_once(victoria: VictoriaMetrics,
                                                    day: int) -> None:
    """Imported, flushed, and in a range vector straight away: a day-long window ending
    on the second sample holds it and, open at its start, not the first."""
    assert values(victoria, f"{SERIES}[1d]", day + DAY) == [[25.0]]
    assert values(victoria, f"{SERIES}[2d]", day + DAY) == [[10.0, 25.0]]
    assert victoria.query(f"last_over_time({SERIES}[1d])", day + DAY)[0]["value"] == \
        [day + DAY, "25"]


def test_a_negative_offset_reads_the_day_after(victoria: VictoriaMetrics, day: int) -> None:
    """MetricsQL takes ``offset -1d``, as Prometheus does since 2.33: the dashboard's
    totals by period read the day after each step."""
    assert values(victoria, f"last_over_time({SERIES}[1d] offset -1d)", day) == [[25.0]]
    assert values(victoria, f"{SERIES} offset -1d", day) == [[25.0]]
    assert values(victoria, f"last_over_time({SERIES}[1d] offset -1d)", day + DAY) == []


def test_the_write_url_is_prometheus_remote_writes(victoria: VictoriaMetrics) -> None:
    assert victoria.write_url == f"{victoria.url}/api/v1/write"
    assert victoria.url.startswith("http://127.0.0.1:")

