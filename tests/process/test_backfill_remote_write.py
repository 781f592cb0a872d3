"""End to end: a year of two accounts pushed by remote write into real servers.

The loopback fake serves the demo account; ``scenario-exporter backfill`` (the
real command, default range: the 12 months before the current one) pushes into
Prometheus 2 and 3 (``--web.enable-remote-write-receiver``, an out-of-order window
and a retention that reach back a year) and into VictoriaMetrics (Debian's single
node). Per month, the last sample of every model must be the fake's sum of that
month, and the usage dashboard's "Spend by period" panel must show the 12 totals.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from exporter.core.period import PeriodWindow
from exporter.upstream.demo import DemoAccount
from testkit.backfill import past_months
from testkit.dashboards import panel_queries, substitute
from testkit.fake_upstream import FakeUpstream
from testkit.helm import job_command_line, one, render, write_pod_volumes
from testkit.oracle import model_totals
from testkit.processes import Processes, clean_environment
from testkit.prometheus import (
    BUILDS,
    KEEP_EVERYTHING,
    QueryAPI,
    find_build,
    prometheus_config,
    require_build,
    run_tool,
    start_prometheus,
)
from testkit.repo import REPO_ROOT
from testkit.victoria import require_victoria_metrics, start_victoria_metrics

ACCOUNTS = ("studio", "mobile")
MODELS = 8
SERVERS = [*BUILDS, pytest.param("victoria-metrics", id="victoria-metrics")]
# Samples a year old are out of order for a head that has seen today's: the window
# reaches back over the whole history (docs/backfill.md).
OUT_OF_ORDER = {"storage": {"tsdb": {"out_of_order_time_window": "400d"}}}


@dataclass
class Pushed:
    fake: FakeUpstream
    months: list[PeriodWindow]
    server: QueryAPI
    summary: str  # the backfill's last log line


def write_accounts(path: Path, api_url: str) -> Path:
    """Two accounts of the fake's one key, in calendar months (this test's windows)."""
    path.write_text(yaml.safe_dump({
        "scenario": {"api-url": api_url}, "period": "month",
        "accounts": [{"name": name, "api_key": "test-key", "api_secret": "test-secret-value"}
                     for name in ACCOUNTS]}), encoding="utf-8")
    return path


def start_server(param: object, processes: Processes, tmp: Path) -> tuple[QueryAPI, str]:
    """The server of *param* with its remote-write URL."""
    if param == "victoria-metrics":
        require_victoria_metrics()
        server = start_victoria_metrics(processes, tmp / "vm-data")
        return server, server.write_url
    build = require_build(param)  # type: ignore[arg-type]
    prometheus = start_prometheus(build, processes, "remote-write",
                                  {**prometheus_config([], []), **OUT_OF_ORDER},
                                  tmp / "data", "--web.enable-remote-write-receiver",
                                  *KEEP_EVERYTHING)
    return prometheus, f"{prometheus.url}/api/v1/write"


@pytest.fixture(scope="module", params=SERVERS)
def pushed(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    tmp = tmp_path_factory.mktemp(f"remote-write-{request.param}")
    with FakeUpstream(DemoAccount(models=MODELS, users=4, api_keys=1)) as fake, \
            Processes() as processes:
        server, write_url = start_server(request.param, processes, tmp)
        config = write_accounts(tmp / "accounts.yml", fake.url)
        result = run_tool([sys.executable, "-m", "exporter", "backfill",
                           f"--config.file={config}", f"--remote-write.url={write_url}",
                           "--label=job=scenario-exporter", "--label=instance=exporter:10097"],
                          env=clean_environment(), cwd=REPO_ROOT)
        flush = getattr(server, "force_flush", None)
        if flush is not None:
            flush()
        yield Pushed(fake, past_months(12), server, result.stderr.strip().splitlines()[-1])


def test_a_year_is_one_request_per_month_and_account_and_all_pushed(pushed: Pushed) -> None:
    assert pushed.fake.request_count == 12 * len(ACCOUNTS)
    assert "backfill complete" in pushed.summary and "written=24" in pushed.summary, \
        pushed.summary
    print(f"\n{pushed.server.name}: {pushed.summary}")


@pytest.mark.parametrize("account", ACCOUNTS)
def test_the_last_sample_of_each_month_is_the_fakes_sum(pushed: Pushed, account: str) -> None:
    for month in pushed.months:
        last = month.end.timestamp() - 0.001
        for metric, field in (("scenario_model_cost_creative_units_total", "cost"),
                              ("scenario_model_jobs_total", "jobs")):
            result = pushed.server.query(
                f'last_over_time({metric}{{account="{account}"}}[1h])', last)
            served = {s["metric"]["model_id"]: float(s["value"][1]) for s in result}
            truth = model_totals(pushed.fake.state.account, month.start, month.end)
            assert served == {m: t[field] for m, t in truth.items()}, (month, metric)


def test_spend_by_period_shows_the_twelve_totals(pushed: Pushed) -> None:
    panel = next(q for q in panel_queries()
                 if q.dashboard == "scenario-usage" and q.panel == "Spend by period")
    expr = substitute(panel.expr, list(ACCOUNTS))
    first, last = pushed.months[0], pushed.months[-1]
    result = pushed.server.api("query_range", query=expr,
                               start=f"{first.start.timestamp():.0f}",
                               end=f"{last.end.timestamp() + 3 * 86400:.0f}",
                               step="86400")["result"]
    truth = [sum(t["cost"] for t in model_totals(pushed.fake.state.account, m.start,
                                                 m.end).values())
             for m in pushed.months]
    assert {s["metric"]["account"] for s in result} == set(ACCOUNTS)
    for series in result:
        assert [float(v) for _, v in series["values"]] == pytest.approx(truth, rel=1e-12), \
            series["metric"]
        # Each bar stands on its period's last day.
        assert [float(t) for t, _ in series["values"]] == [m.end.timestamp() - 86400
                                                          for m in pushed.months]


def test_the_charts_backfill_job_run_as_rendered_fills_prometheus(
        tmp_path: Path) -> None:
    """``backfill.enabled``: the Job's command line, environment and mounts, as helm
    renders them, run here against the loopback fake and a real Prometheus."""
    build = require_build(find_build(2) or 2)
    with FakeUpstream(DemoAccount(models=MODELS, users=4, api_keys=1)) as fake, \
            Processes() as processes:
        server, write_url = start_server(build, processes, tmp_path)
        values = tmp_path / "values.yaml"
        values.write_text(yaml.safe_dump({
            "accounts": [{"name": name, "apiKey": "test-key", "apiSecret": "test-secret-value"}
                         for name in ACCOUNTS],
            "config": {"scenario": {"api-url": fake.url}, "period": "month"},
            "backfill": {"enabled": True, "remoteWrite": {
                "url": write_url, "headers": {"X-Scope-OrgID": "tenant-1"}}}}),
            encoding="utf-8")
        objects = render(values)
        job = one(objects, "Job")
        files = write_pod_volumes(job, tmp_path / "pod", objects=objects)
        argv, env = job_command_line(job, files, objects=objects)
        run_tool(argv, env=clean_environment(env), cwd=REPO_ROOT)
        assert fake.request_count == 12 * len(ACCOUNTS)
        months = past_months(12)
        labels = one(objects, "Service")["metadata"]
        for month in (months[0], months[-1]):
            result = server.query('last_over_time(scenario_model_cost_creative_units_total'
                                  '{account="mobile"}[1h])', month.end.timestamp() - 0.001)
            assert {s["metric"]["model_id"]: float(s["value"][1]) for s in result} == {
                m: t["cost"] for m, t in model_totals(fake.state.account, month.start,
                                                      month.end).items()}
            # The labels a ServiceMonitor's scrape gives the live series.
            assert {(s["metric"]["job"], s["metric"]["namespace"]) for s in result} == {
                (labels["name"], labels["namespace"])}
