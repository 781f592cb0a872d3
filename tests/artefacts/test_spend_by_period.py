"""The usage dashboard's "Spend by period": one bar per period and account, each the
period's total, on the raw series a backfill writes and on live data alike.

The panel is a range query at a 1d step from 00:00 UTC (Grafana aligns its steps
to the dashboard's time zone, UTC); its query reads, at each step, each series'
last value in the day after the step, and keeps it on the days after which a new
period starts (mixin.promql.period_totals). Here it runs as Grafana sends it, on
Prometheus 2 and 3 and on VictoriaMetrics, over a synthetic history of two
accounts, each scraped from two replicas:

- two whole months as the backfill writes them: one sample a day at each daily
  bucket's end, the month's last one 1 ms before the next month starts
  (docs/backfill.md, "Timestamps"), and nothing at all for the first days of the
  next month (the backfill wrote whole months; Prometheus started later);
- then hourly scrapes, across the start of the current month, where the first
  scrape still serves the old month (the exporter has not refreshed yet) and one
  of studio's models, idle since, is no longer served; studio's Prometheus also
  records the period-to-date rule, mobile's series are raw only;
- "now" is noon of the current month's first day.

Each account has exactly four bars: the two backfilled months' totals, the third
month's spend up to its last scrape, and the current month so far.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest

from mixin import promql
from mixin.config import MixinConfig
from mixin.panel_queries import PanelQueries
from mixin.recording_rules import COST, PTD_COST
from testkit.dashboards import panels, substitute
from testkit.processes import Processes
from testkit.prometheus import (
    BUILDS,
    JOB,
    KEEP_EVERYTHING,
    QueryAPI,
    prometheus_config,
    require_build,
    run_tool,
    start_prometheus,
)
from testkit.repo import REPO_ROOT
from testkit.victoria import start_victoria_metrics

DAY, HOUR = 86400, 3600
START = "scenario_period_start_timestamp_seconds"
REPLICAS = ("replica-a:10097", "replica-b:10097")
# CU per hour of each account's models. Studio's m2 spends nothing in the current
# month: upstream no longer reports it, so the exporter no longer serves it.
RATES = {"studio": {"m1": 10, "m2": 3}, "mobile": {"m1": 7}}
QUIET = ("studio", "m2")
RECORDED_FOR = ("studio",)
ACCOUNTS = sorted(RATES)
NOON = 12 * HOUR
USAGE = json.loads((REPO_ROOT / "dashboards" / "scenario-usage.json").read_text())
PANEL = next(p for p in panels(USAGE) if p["title"] == "Spend by period")


# -- the panel ------------------------------------------------------------------------

def test_the_panel_draws_grouped_bars_of_the_last_12_months_in_daily_steps() -> None:
    assert PANEL["type"] == "barchart"
    assert (PANEL["interval"], PANEL["timeFrom"]) == ("1d", "now-12M")
    assert USAGE["timezone"] == "utc", "Grafana aligns the steps to 00:00 of this time zone"
    (target,) = PANEL["targets"]
    assert target["range"] is True and target["instant"] is False
    assert target["legendFormat"] == "{{account}} ({{job}})"
    assert target["expr"] == PanelQueries(MixinConfig()).period_totals(PTD_COST, COST)
    (override,) = PANEL["fieldConfig"]["overrides"]
    assert override["matcher"] == {"id": "byType", "options": "time"}
    assert override["properties"] == [{"id": "unit", "value": "time:YYYY-MM-DD"}]


# -- a synthetic history --------------------------------------------------------------

Sample = tuple[str, dict[str, str], float, int]  # name, labels, value, milliseconds


@dataclass(frozen=True)
class History:
    """Five month starts, in Unix seconds: two backfilled months, a month scraped live
    from its fifth day, the current month, and its end."""

    starts: list[int]

    @property
    def current(self) -> int:
        return self.starts[3]

    @property
    def live_from(self) -> int:
        return self.starts[2] + 4 * DAY + HOUR

    def spent(self, account: str, start: int, at: int, *, quiet: bool = False) -> float:
        """What *account*'s models had spent from *start* to *at* (seconds)."""
        return sum(rate * (at - start) / HOUR for model, rate in RATES[account].items()
                   if not (quiet and (account, model) == QUIET))


def month_starts() -> list[int]:
    """The starts of the five months before this one: all in the past, which
    VictoriaMetrics requires, and within its retention."""
    today = datetime.now(timezone.utc)
    months = [(today.year * 12 + today.month - 1) - back for back in range(5, 0, -1)]
    return [int(datetime(m // 12, m % 12 + 1, 1, tzinfo=timezone.utc).timestamp())
            for m in months]


def samples(history: History) -> list[Sample]:
    """Every sample of the history, per replica: raw counters and period starts, and
    studio's recorded period-to-date sum 10 s after each live scrape."""
    found: list[Sample] = []

    def scrape(at_ms: int, start: int, values: dict[str, dict[str, float]]) -> None:
        for account, by_model in values.items():
            for replica in REPLICAS:
                labels = {"job": JOB, "instance": replica, "account": account}
                found.append((START, labels, float(start), at_ms))
                for model, value in by_model.items():
                    found.append((COST, {**labels, "model_id": model}, value, at_ms))
            if account in RECORDED_FOR and at_ms >= history.live_from * 1000:
                found.append((PTD_COST, {"job": JOB, "account": account},
                              sum(by_model.values()), at_ms + 10_000))

    def period_to_date(start: int, at: int, *, quiet: bool = False) -> dict[str, dict[str, float]]:
        return {account: {model: rate * (at - start) / HOUR for model, rate in rates.items()
                          if not (quiet and (account, model) == QUIET)}
                for account, rates in RATES.items()}

    for start, end in zip(history.starts[:2], history.starts[1:3], strict=True):  # backfilled
        for at in range(start + DAY, end + 1, DAY):
            scrape(min(at * 1000, end * 1000 - 1), start, period_to_date(start, at))
    third, current = history.starts[2], history.current
    for at in range(history.live_from, current, HOUR):  # scraped live
        scrape(at * 1000, third, period_to_date(third, at))
    # 30 s into the new month, the exporter still serves the old month's last refresh.
    scrape((current + 30) * 1000, third, period_to_date(third, current - HOUR))
    for at in range(current + HOUR, current + NOON + 1, HOUR):
        scrape(at * 1000, current, period_to_date(current, at, quiet=True))
    return found


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{name}="{value}"' for name, value in sorted(labels.items()))


def openmetrics(found: list[Sample]) -> str:
    """The samples as an OpenMetrics file for promtool: family by family, series by
    series, in time order."""
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for name, labels, value, at in found:
        series.setdefault(name, {}).setdefault(_labels(labels), []).append((at, value))
    lines: list[str] = []
    for name, by_labels in sorted(series.items()):
        kind = "counter" if name.endswith("_total") else "gauge"
        lines.append(f"# TYPE {name.removesuffix('_total')} {kind}")
        for labels, points in sorted(by_labels.items()):
            lines += [f"{name}{{{labels}}} {value} {at / 1000:.3f}"
                      for at, value in sorted(points)]
    return "\n".join([*lines, "# EOF", ""])


def text_format(found: list[Sample]) -> str:
    """The samples in Prometheus' text format, with millisecond timestamps."""
    return "".join(f"{name}{{{_labels(labels)}}} {value} {at}\n"
                   for name, labels, value, at in found)


@dataclass
class Server:
    api: QueryAPI
    history: History


@pytest.fixture(scope="module",
                params=[*BUILDS, pytest.param("victoria-metrics", id="victoria-metrics")])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The history in a Prometheus of each major (blocks made by its promtool) and in
    VictoriaMetrics (imported)."""
    history = History(month_starts())
    found = samples(history)
    tmp = tmp_path_factory.mktemp("spend-by-period")
    with Processes() as processes:
        api: QueryAPI
        if request.param == "victoria-metrics":
            victoria = start_victoria_metrics(processes, tmp / "victoria")
            victoria.import_prometheus(text_format(found))
            api = victoria
        else:
            build = require_build(request.param)
            source = tmp / "history.om"
            source.write_text(openmetrics(found), encoding="utf-8")
            # Blocks of up to a month (a hidden flag of promtool), not one per 2 hours.
            run_tool([build.promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet",
                      "--max-block-duration=744h", str(source), str(tmp / "data")])
            api = start_prometheus(build, processes, "spend-by-period",
                                   prometheus_config([], []), tmp / "data", *KEEP_EVERYTHING)
        yield Server(api, history)


def bars(api: QueryAPI, expr: str, start: int, end: int) -> dict[str, dict[int, float]]:
    """The points of each account's series of a range query at a 1d step, as Grafana
    sends it (*start* and *end* at 00:00 UTC): ``{account: {time: value}}``."""
    data = api.api("query_range", query=expr, start=str(start), end=str(end), step=str(DAY))
    found: dict[str, dict[int, float]] = {}
    for series in data["result"]:
        labels: dict[str, Any] = series["metric"]
        assert set(labels) == {"job", "account"} and labels["job"] == JOB, labels
        found[labels["account"]] = {int(t): float(v) for t, v in series["values"]}
    return found


# -- the proof ------------------------------------------------------------------------

def test_one_bar_per_period_and_account_each_the_periods_total(server: Server) -> None:
    """Over the whole history (Grafana's range ends on today's 00:00): the backfilled
    months' totals on their last days, the live month's spend up to its last scrape,
    the current month's up to now; once each, not doubled by the second replica, the
    current one without the model that was idle since the month began."""
    history = server.history
    expr = substitute(PANEL["targets"][0]["expr"], ACCOUNTS)
    one, two, three, current, _ = history.starts
    expected = {account: {
        two - DAY: history.spent(account, one, two),
        three - DAY: history.spent(account, two, three),
        current - DAY: history.spent(account, three, current - HOUR),
        current: history.spent(account, current, current + NOON, quiet=True),
    } for account in ACCOUNTS}
    assert bars(server.api, expr, one - 3 * DAY, current) == expected


def test_a_range_that_ends_in_a_period_shows_no_bar_for_it(server: Server) -> None:
    """A range that ends before a period's last day (in the live month, with a day of
    data after it) has the earlier periods' bars only."""
    history = server.history
    expr = substitute(PANEL["targets"][0]["expr"], ACCOUNTS)
    one, two, three, _, _ = history.starts
    assert bars(server.api, expr, one, three + 10 * DAY) == {
        account: {two - DAY: history.spent(account, one, two),
                  three - DAY: history.spent(account, two, three)}
        for account in ACCOUNTS}


def test_the_raw_series_alone_would_count_a_model_that_went_quiet(server: Server) -> None:
    """Why the recorded sum comes first: the raw series' last values of the first day of
    a month include the 30 s during which the exporter still served the old month, so a
    model idle since then adds its old total to the new month."""
    history = server.history
    queries = PanelQueries(MixinConfig())
    raw = promql.aggregate_by("sum", queries.by(), promql.dedup(
        MixinConfig(), promql.day_last(queries.sel(COST))))
    current = history.current
    stale = RATES["studio"]["m2"] * (current - HOUR - history.starts[2]) / HOUR
    assert bars(server.api, substitute(raw, ACCOUNTS), current, current) == {
        "studio": {current: history.spent("studio", current, current + NOON, quiet=True)
                   + stale},
        "mobile": {current: history.spent("mobile", current, current + NOON)},
    }


def test_the_history_has_the_backfills_timestamps() -> None:
    """One sample a day at each daily bucket's end, the month's last 1 ms before the
    next month starts, none at a month's start."""
    history = History(month_starts())
    one, two = history.starts[:2]
    stamps = sorted({at for name, labels, _, at in samples(history)
                     if name == COST and labels["account"] == "mobile"})
    month = [at for at in stamps if one * 1000 < at < two * 1000]
    assert month[0] == (one + DAY) * 1000 and month[-1] == two * 1000 - 1
    assert len(month) == (two - one) // DAY
    assert one * 1000 not in stamps and two * 1000 not in stamps
