"""End to end: backfill a year of two accounts, load it into a real Prometheus.

The loopback fake serves the demo account. ``scenario-exporter backfill`` (the
real command, with its default range: the 12 months before the current one)
writes the file, the real ``promtool`` turns it into blocks and
backfills the recording rules, and a real Prometheus, which also scrapes a live
exporter of the same accounts, serves both: the backfilled samples must be the
fake's sums, daily, with the live series' labels, and the dashboard's
period-to-date spend panel must show them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
import yaml

from exporter.core.period import PeriodWindow
from exporter.upstream.demo import DemoAccount
from testkit.backfill import past_months
from testkit.dashboards import panel_queries, substitute
from testkit.fake_upstream import FakeUpstream
from testkit.oracle import model_totals
from testkit.processes import Processes, clean_environment, free_port
from testkit.prometheus import (
    BUILDS,
    KEEP_EVERYTHING,
    RULE_PASSES,
    START_TIMEOUT,
    Prometheus,
    backfill_recording_rules,
    load_openmetrics,
    prometheus_config,
    require_build,
    run_tool,
    start_prometheus,
)
from testkit.repo import REPO_ROOT
from testkit.served import TEAM_SERIES
from testkit.waiting import wait_for

ACCOUNTS = ("studio", "mobile")
BUDGET = 50000.0
OWN_SERIES = "scenario_exporter_"


@dataclass
class History:
    fake: FakeUpstream
    months: list[PeriodWindow]
    prometheus: Prometheus  # the backfilled history, and a live exporter's scrapes
    instance: str
    backfill_seconds: float
    backfill_requests: int


def rule_moments(month: PeriodWindow) -> tuple[datetime, datetime]:
    """Two samples of a month: the tenth day's, and the month's last."""
    return month.start + timedelta(days=10), month.end - timedelta(milliseconds=1)


@pytest.fixture(scope="module", params=BUILDS)
def history(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """The history in Prometheus 2, then in Prometheus 3 (the test ids say which)."""
    build = require_build(request.param)
    tmp = tmp_path_factory.mktemp(f"backfill-e2e-{build}")
    windows = past_months(12)
    with FakeUpstream(DemoAccount(models=12, users=6, api_keys=2)) as fake, \
            Processes() as processes:
        config = tmp / "accounts.yml"
        config.write_text(yaml.safe_dump({
            # Calendar months, which this test's windows are (billing: test_backfill_billing).
            "scenario": {"api-url": fake.url}, "period": "month",
            "accounts": [{"name": name, "api_key": "test-key",
                          "api_secret": "test-secret-value",
                          **({"budget_creative_units": BUDGET} if name == "studio" else {})}
                         for name in ACCOUNTS]}), encoding="utf-8")
        instance = f"127.0.0.1:{free_port()}"  # of the live exporter, started afterwards

        output = tmp / "history.om"
        started = time.monotonic()
        # No --start, no --end: the 12 periods before the current one.
        run_tool([sys.executable, "-m", "exporter", "backfill", f"--config.file={config}",
                  f"--output={output}", "--label=job=scenario-exporter",
                  f"--label=instance={instance}"],
                 env=clean_environment(), cwd=REPO_ROOT)
        elapsed = time.monotonic() - started
        requests = fake.request_count
        processes.start(f"--config.file={config}", f"--web.listen-address={instance}",
                        "--cache.ttl=5s")

        data = tmp / "data"
        load_openmetrics(build, [output], data)
        # The recording rules, backfilled from the raw history, evaluated every 5m
        # (the lookback delta) so that each daily sample is seen. Around two samples
        # only: a whole month takes minutes (docs/backfill.md has the command for
        # the whole range).
        backfill_recording_rules(
            build, processes, data, REPO_ROOT / "rules" / "scenario-recording.rules.yml",
            [(moment.timestamp(), moment.timestamp() + 3600)
             for moment in rule_moments(windows[0])], "5m", tmp / "rules",
            RULE_PASSES / f"backfill-{build}")
        prometheus = start_prometheus(build, processes, "with-rules",
                                      prometheus_config([instance], []), data, *KEEP_EVERYTHING)
        wait_for(lambda: prometheus.query(
            'scenario_model_cost_creative_units_total{account="mobile"}'),
            START_TIMEOUT, "a live scrape", prometheus.process.tail, interval=0.2)
        yield History(fake, windows, prometheus, instance, elapsed, requests)


def test_one_request_per_month_and_account(history: History) -> None:
    assert history.backfill_requests == len(history.months) * len(ACCOUNTS)
    print(f"\nbackfill of {len(history.months)} months x {len(ACCOUNTS)} accounts: "
          f"{history.backfill_seconds:.2f} s, {history.backfill_requests} requests")


@pytest.mark.parametrize("account", ACCOUNTS)
def test_the_last_sample_of_each_month_is_the_fakes_sum(history: History, account: str) -> None:
    for month in history.months:
        last = month.end.timestamp() - 0.001
        result = history.prometheus.query(
            f'scenario_model_cost_creative_units_total{{account="{account}"}}', last)
        served = {s["metric"]["model_id"]: float(s["value"][1]) for s in result}
        truth = model_totals(history.fake.state.account, month.start, month.end)
        assert served == {model_id: t["cost"] for model_id, t in truth.items()}, month
        jobs = history.prometheus.query(f'scenario_model_jobs_total{{account="{account}"}}', last)
        assert {s["metric"]["model_id"]: float(s["value"][1]) for s in jobs} == \
            {model_id: t["jobs"] for model_id, t in truth.items()}


def test_each_month_has_daily_samples(history: History) -> None:
    for month in history.months:
        days = round(month.seconds / 86400)
        # A second short of the month: not the previous month's last sample, 1 ms
        # before the month began (range selectors include their start).
        result = history.prometheus.query(
            f'count_over_time(scenario_model_cost_creative_units_total[{days * 86400 - 1}s])',
            month.end.timestamp() - 0.001)
        assert len(result) == 12 * len(ACCOUNTS)
        assert {float(s["value"][1]) for s in result} == {days}, month


def _label_sets(history: History, start: float, end: float) -> set[frozenset[tuple[str, str]]]:
    series = history.prometheus.api("series", **{"match[]": '{__name__=~"scenario_.+"}',
                                      "start": f"{start:.3f}", "end": f"{end:.3f}"})
    # The team's gauges are the present state of the plan: no history to backfill.
    return {frozenset(s.items()) for s in series if not s["__name__"].startswith(OWN_SERIES)
            and s["__name__"] not in TEAM_SERIES}


def test_labels_are_a_live_scrapes_plus_the_target_labels(history: History) -> None:
    last = history.months[-1]
    backfilled = _label_sets(history, last.end.timestamp() - 3600, last.end.timestamp() - 0.001)
    now = time.time()
    live = _label_sets(history, now - 30, now)
    assert backfilled == live
    assert {dict(s)["job"] for s in backfilled} == {"scenario-exporter"}
    assert {dict(s)["instance"] for s in backfilled} == {history.instance}
    names = {dict(s)["__name__"] for s in backfilled}
    assert {"scenario_model_cost_creative_units_total", "scenario_model_info",
            "scenario_user_info", "scenario_budget_creative_units",
            "scenario_period_start_timestamp_seconds"} <= names


def test_the_dashboards_period_to_date_spend_shows_the_backfilled_months(
        history: History) -> None:
    panel = next(q for q in panel_queries()
                 if q.dashboard == "scenario-usage" and q.panel == "Spend this period")
    expr = substitute(panel.expr, list(ACCOUNTS))
    first = history.months[0]
    account = history.fake.state.account
    # The rules were evaluated every 5 minutes: each daily sample is in one
    # evaluation within 5 minutes after it; look at the 10 minutes after it.
    for sample in rule_moments(first):
        at = sample.timestamp()
        result = history.prometheus.api("query_range", query=expr, start=f"{at:.3f}",
                             end=f"{at + 600:.3f}", step="30")["result"]
        end = min(sample + timedelta(milliseconds=1), first.end)
        spend = sum(t["cost"] for t in model_totals(account, first.start, end).values())
        assert {s["metric"]["account"] for s in result} == set(ACCOUNTS), sample
        for series in result:
            assert {float(v) for _, v in series["values"]} == {spend}, sample
