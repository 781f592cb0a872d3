"""End to end: real Prometheus servers load the rules and scrape real exporters.

Everything below runs twice: on Prometheus 2 and on Prometheus 3 (the version
is in each test's id and in the servers' names).

Two replicas of one exporter read the same loopback fake of Scenario's API.
Prometheus *single* scrapes one replica; Prometheus *pair* scrapes both, as
the chart's HA setup does. Each replica serves, per model, exactly what the fake
answers for the replica's own window (up to its ``scenario_data_as_of_timestamp_seconds``),
and each server's period-to-date rules give exactly the fake's figures for the
freshest window it holds: every process is compared with the truth for its own
window, never two processes with each other within a timing tolerance (the
replicas refresh at their own moments). Then upstream revises a model's cost
down while one replica restarts: the revision is counted once, both replicas
and both servers serve the revised truth, and no spend-rate panel shows a
spike larger than the revision. That a second replica changes no figure of
any panel or rule is proven exactly, on identical replica histories, in
tests/process/test_replica_figures.py.

Also: every panel query returns data (the exporters run with a price, and
the fake answers the team endpoints: money, plan and caps too), every rule
evaluates with health ``ok``, and no alert about the exporter's own health or
the team's payment is pending on a healthy exporter and team (the plan and
money alerts are checked in tests/process/test_plan_and_money.py). Every
process is stopped at the end, whatever happens.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from exporter.upstream.demo import DemoAccount
from testkit.dashboards import (
    DASHBOARD_FILES,
    RULE_FILES,
    PanelQuery,
    panel_queries,
    recorded_series,
    substitute,
)
from testkit.exposition import Exposition, moment
from testkit.fake_upstream import FakeUpstream
from testkit.processes import ExporterProcess, Processes, free_port
from testkit.prometheus import (
    BUILDS,
    JOB,
    START_TIMEOUT,
    Prometheus,
    prometheus_config,
    require_build,
    start_prometheus,
)
from testkit.waiting import wait_for

API_KEY, API_SECRET = "e2e-key", "e2e-secret-value"
ACCOUNT = "default"
# Demo seconds per real second: thousands of jobs a minute, so that one-minute
# rates are smooth and a revision is small beside a window's growth.
SPEED = 3000.0
TTL = "2s"
# Grafana computes these from the dashboard's range and the panel's width;
# here: 60 one-second scrapes per rate window.
RATE_WINDOW_SECONDS = 60
# Alerts that must stay silent while the exporter and its upstream are healthy,
# and (the spike) while Prometheus is too new to know what is usual.
SILENT_ALERTS = {"ScenarioExporterDown", "ScenarioRefreshFailing", "ScenarioDataStale",
                 "ScenarioUpstreamRateLimited", "ScenarioSpendSpike", "ScenarioTeamEndpointDown",
                 "ScenarioPaymentOrSubscriptionIssue"}
# A contract price, so that the money rules and panels have data (and the fake
# answers the team endpoints, so that the plan and caps ones do).
PRICE = "0.02"
SPEND_RATE_UNIT = "suffix: CU/h"
REFUND = 5000.0
# The model counters and the field of the fake's truth (testkit.oracle) each serves.
MODEL_FIELDS = {
    "scenario_model_cost_creative_units_total": "cost",
    "scenario_model_cost_by_api_key_creative_units_total": "cost_api_key",
    "scenario_model_discount_creative_units_total": "discount",
    "scenario_model_discount_by_api_key_creative_units_total": "discount_api_key",
    "scenario_model_jobs_total": "jobs",
}


@dataclass
class Stack:
    """The fake upstream, two exporter replicas, and the two Prometheus servers."""

    fake: FakeUpstream
    processes: Processes
    replicas: list[ExporterProcess]
    addresses: list[str]
    single: Prometheus  # scrapes replica 0
    pair: Prometheus    # scrapes replicas 0 and 1

    def logs(self) -> str:
        return "\n".join([self.single.process.tail(), self.pair.process.tail(),
                          *("\n".join(r.stderr_lines[-10:]) for r in self.replicas)])

    def start_replica(self, address: str) -> ExporterProcess:
        replica = self.processes.start(
            "--web.listen-address", address, "--scenario.api-url", self.fake.url,
            "--cache.ttl", TTL, "--upstream.max-requests-per-hour", "100000",
            "--budget.creative-units", "1e12", "--price.per-creative-unit", PRICE,
            "--log.level", "warning",
            env={"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": API_SECRET},
            port=int(address.rpartition(":")[2]))  # the log level hides the listening line
        replica.wait_ready(timeout=START_TIMEOUT, interval=0.1)
        return replica

    def restart_replica(self, index: int) -> None:
        """Stop replica *index* and start a new process on the same address (same target)."""
        assert self.replicas[index].terminate() == 0
        self.replicas[index] = self.start_replica(self.addresses[index])


def metrics(address: str) -> Exposition:
    response = httpx.get(f"http://{address}/metrics", timeout=10, trust_env=False)
    assert response.status_code == 200, response.text
    return Exposition.parse(response.text)


@pytest.fixture(scope="module", params=BUILDS)
def stack(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole stack on Prometheus 2, then on Prometheus 3 (the test ids say which)."""
    build = require_build(request.param)
    tmp = tmp_path_factory.mktemp(f"e2e-{build}")
    with FakeUpstream(DemoAccount(), API_KEY, API_SECRET) as fake, Processes() as processes:
        fake.state.speed = SPEED
        addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        stack = Stack(fake, processes, [], addresses, None, None)  # type: ignore[arg-type]
        stack.replicas = [stack.start_replica(address) for address in addresses]
        stack.single = start_prometheus(build, processes, "single",
                                        prometheus_config(addresses[:1], RULE_FILES),
                                        tmp / "data-single")
        stack.pair = start_prometheus(build, processes, "pair",
                                      prometheus_config(addresses, RULE_FILES), tmp / "data-pair")
        yield stack


@pytest.fixture(scope="module")
def warmed_up(stack: Stack) -> Stack:
    """Wait until the rate windows hold a full minute of refreshes from both replicas,
    and every rule has been evaluated with data: recording rules produce series, the
    last of them (the projection) depending on all the others."""
    replicas = f'count(count_over_time(up{{job="{JOB}"}}[{RATE_WINDOW_SECONDS}s]) >= 55)'

    def ready() -> bool:
        for server, count in ((stack.single, 1), (stack.pair, 2)):
            full = server.query(replicas)
            if not full or float(full[0]["value"][1]) != count:
                return False
            if not server.query(
                    "account:scenario_model_cost_creative_units:projected_at_period_end"):
                return False
            rules = server.rules()
            if not rules or any(rule["health"] == "unknown" for rule in rules):
                return False
        return True

    wait_for(ready, RATE_WINDOW_SECONDS + 60, "a full rate window and evaluated rules",
             stack.logs, interval=0.5)
    return stack


PANEL_QUERIES = panel_queries()
RECORDED = sorted(recorded_series())
SPEND_RATES = [*(substitute(q.expr, [ACCOUNT]) for q in PANEL_QUERIES
                 if q.unit == SPEND_RATE_UNIT),
               "account:scenario_model_cost_creative_units:rate1h * 3600"]
# The period-to-date recording rules of a model counter, with the counter each reads.
PERIOD_TO_DATE = [
    (rule["record"], rule["expr"], counter)
    for path in RULE_FILES
    for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    for rule in group["rules"]
    if rule.get("record", "").endswith(":period_to_date")
    for counter in re.findall(r"\bscenario_model_[a-z_]+_total\b", rule["expr"])]


def test_the_lists_name_real_panels_and_queries() -> None:
    assert {q.dashboard for q in PANEL_QUERIES} == {p.stem for p in DASHBOARD_FILES}
    assert len(PANEL_QUERIES) >= 40
    assert len(SPEND_RATES) >= 5 and len(RECORDED) >= 10
    assert len(PERIOD_TO_DATE) >= 4
    assert {counter for _, _, counter in PERIOD_TO_DATE} <= set(MODEL_FIELDS)


def figures(server: Prometheus, expr: str, at: float) -> dict[frozenset[tuple[str, str]], float]:
    return {frozenset(sample["metric"].items()): float(sample["value"][1])
            for sample in server.query(expr, at)}


def replica_differences(stack: Stack, served: Exposition) -> list[str]:
    """What one replica serves per model, against what the fake answers for the replica's
    own window (its period start to its ``scenario_data_as_of_timestamp_seconds``)."""
    start = served.value("scenario_period_start_timestamp_seconds", account=ACCOUNT)
    as_of = served.value("scenario_data_as_of_timestamp_seconds", account=ACCOUNT)
    assert start is not None and as_of is not None
    truth = stack.fake.state.model_totals(moment(start), moment(as_of))
    differences = []
    for counter, field in MODEL_FIELDS.items():
        expected = {model_id: totals[field] for model_id, totals in truth.items()}
        got = served.by_label(counter, "model_id", account=ACCOUNT)
        if got != expected:
            differences.append(f"{counter} up to {as_of}: served {got}, the fake {expected}")
    return differences


def server_differences(stack: Stack, server: Prometheus) -> list[str]:
    """Each period-to-date rule of a model counter, evaluated on *server* a moment ago,
    against the fake's answer for the freshest window the server holds then."""
    at = time.time() - 2
    def freshest(gauge: str) -> float:
        (value,) = figures(server, f'max without (instance, pod) ({gauge}{{account="{ACCOUNT}"}})',
                           at).values()
        return value

    as_of = freshest("scenario_data_as_of_timestamp_seconds")
    start = freshest("scenario_period_start_timestamp_seconds")
    truth = stack.fake.state.model_totals(moment(start), moment(as_of))
    differences = []
    for record, expr, counter in PERIOD_TO_DATE:
        field = MODEL_FIELDS[counter]
        got = {dict(labels).get("model_id"): value
               for labels, value in figures(server, expr, at).items()}
        if None in got:  # summed over the models
            expected = {None: sum(totals[field] for totals in truth.values())}
        else:
            expected = {model_id: totals[field] for model_id, totals in truth.items()}
        if got != expected:
            differences.append(f"{server.name} {record} up to {as_of}: {got}, "
                               f"the fake {expected}")
    return differences


def test_each_replica_serves_the_fakes_figures_for_its_own_window(warmed_up: Stack) -> None:
    differences = [line for address in warmed_up.addresses
                   for line in replica_differences(warmed_up, metrics(address))]
    assert not differences, "\n".join(differences)


def test_each_server_holds_the_fakes_period_to_date(warmed_up: Stack) -> None:
    """One replica or two, the period-to-date figures are the fake's, exactly."""
    differences = [line for server in (warmed_up.single, warmed_up.pair)
                   for line in server_differences(warmed_up, server)]
    assert not differences, "\n".join(differences)


@pytest.mark.parametrize("query", PANEL_QUERIES, ids=str)
def test_panel_query_returns_data(warmed_up: Stack, query: PanelQuery) -> None:
    # A query that reads the day after each step (offset -1d, "Spend by period") is
    # evaluated at today's midnight: the step Grafana sends for today.
    at = 86400 * (time.time() // 86400) if "offset -" in query.expr else None
    result = warmed_up.pair.query(substitute(query.expr, [ACCOUNT]), at)
    assert result, f"{query}: no data\n{query.expr}"
    values = [float(sample["value"][1]) for sample in result]
    assert any(math.isfinite(v) for v in values), f"{query}: only NaN/Inf: {result}"
    for sample in result:
        assert sample["metric"].get("account", ACCOUNT) == ACCOUNT
        assert sample["metric"].get("job", JOB) == JOB


def test_annotation_queries_are_valid(warmed_up: Stack) -> None:
    """Annotations mark rare events (a new period): they may be empty, never invalid."""
    count = 0
    for path in DASHBOARD_FILES:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for annotation in dashboard["annotations"]["list"]:
            if "expr" in annotation:
                warmed_up.pair.query(substitute(annotation["expr"], [ACCOUNT]))
                count += 1
    assert count >= 1


def test_every_rule_evaluates_with_health_ok(warmed_up: Stack) -> None:
    expected = {rule.get("record") or rule.get("alert")
                for path in RULE_FILES
                for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
                for rule in group["rules"]}
    for server in (warmed_up.single, warmed_up.pair):
        groups = server.api("rules")["groups"]
        files = {Path(group["file"]).resolve() for group in groups}
        assert files == {path.resolve() for path in RULE_FILES}
        loaded = {rule["name"] for group in groups for rule in group["rules"]}
        assert loaded == expected
        for group in groups:
            for rule in group["rules"]:
                assert rule["health"] == "ok", f"{group['name']}/{rule['name']}: {rule}"
                assert not rule.get("lastError"), f"{rule['name']}: {rule['lastError']}"


def test_recording_rules_keep_the_job_and_drop_the_replica(warmed_up: Stack) -> None:
    for record in RECORDED:
        result = warmed_up.pair.query(record)
        assert result, record
        for sample in result:
            labels = sample["metric"]
            assert (labels["account"], labels["job"]) == (ACCOUNT, JOB), record
            assert "instance" not in labels, record


def test_no_false_alert_from_a_healthy_exporter_and_a_new_prometheus(warmed_up: Stack) -> None:
    alerts = warmed_up.pair.api("alerts")["alerts"]
    noisy = [a for a in alerts if a["labels"]["alertname"] in SILENT_ALERTS]
    assert noisy == []
    # Assets flagged before Prometheus started are not news: only a label whose
    # counter grew while Prometheus watched may alert.
    for alert in alerts:
        if alert["labels"]["alertname"] == "ScenarioNSFWAssetsFlagged":
            grew = warmed_up.pair.query(f'increase(scenario_nsfw_assets_total{{label="'
                                        f'{alert["labels"]["label"]}"}}[10m]) > 0')
            assert grew, alert


def _cost(expo: Exposition, model_id: str) -> float:
    value = expo.value("scenario_model_cost_creative_units_total", account=ACCOUNT,
                       model_id=model_id)
    assert value is not None, model_id
    return value


def _decreases(expo: Exposition) -> float | None:
    return expo.value("scenario_exporter_upstream_decreases_total", account=ACCOUNT)


def test_a_revision_and_a_restart_change_no_figure_and_make_no_spike(warmed_up: Stack) -> None:
    """Runs last: it changes upstream. The biggest model is refunded REFUND CU while
    replica 1 restarts. Replica 0 counts one revision, once; both replicas and both
    servers serve the revised truth; no spend-rate panel or rule shows a spike larger
    than the revision spread over its window."""
    stack = warmed_up
    before = time.time()
    baseline = {expr: stack.pair.series_max(expr, before - RATE_WINDOW_SECONDS, before)
                for expr in SPEND_RATES}
    first = metrics(stack.addresses[0])
    costs = first.by_label("scenario_model_cost_creative_units_total", "model_id",
                           account=ACCOUNT)
    refunded = max(costs, key=lambda model_id: costs[model_id])
    assert _decreases(first) == 0.0

    stack.fake.state.refunds[refunded] = REFUND
    stack.restart_replica(1)
    revised = time.time()
    requests = stack.fake.calls("usages")
    wait_for(lambda: stack.fake.calls("usages") >= requests + 5, 30, "five more refreshes")
    wait_for(lambda: _decreases(metrics(stack.addresses[0])) == 1.0, 10,
             "replica 0 to count the revision", stack.logs)
    # One revision, one count, however many refreshes follow.
    requests = stack.fake.calls("usages")
    wait_for(lambda: stack.fake.calls("usages") >= requests + 5, 30, "five more refreshes")
    served = [metrics(address) for address in stack.addresses]
    assert _decreases(served[0]) == 1.0
    assert _decreases(served[1]) == 0.0  # the restarted replica never saw the old value
    # The replica that lived through the revision and the one started after it
    # each serve the fake's revised figures for their own windows.
    differences = [line for expo in served for line in replica_differences(stack, expo)]
    assert not differences, "\n".join(differences)
    assert _cost(served[0], refunded) < costs[refunded] + SPEED * 60

    # Wait until the revision is inside every rate window, then out of it.
    wait_for(lambda: time.time() > revised + RATE_WINDOW_SECONDS + 10,
             RATE_WINDOW_SECONDS + 20, "the rate windows to pass the revision", interval=1)
    after = time.time()
    allowance = REFUND * 3600 / RATE_WINDOW_SECONDS
    for expr in SPEND_RATES:
        peak = stack.pair.series_max(expr, revised - 5, after)
        assert peak <= 1.5 * baseline[expr] + allowance, \
            f"{expr}\n  peak {peak:g} CU/h after the revision, {baseline[expr]:g} before"
    differences = [line for server in (stack.single, stack.pair)
                   for line in server_differences(stack, server)]
    assert not differences, "\n".join(differences)
