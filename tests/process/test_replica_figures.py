"""Two replicas give the figures of one, exactly: every panel and rule, on identical histories.

Replicas of one exporter serve the same series, told apart only by the labels
Prometheus adds per target (``instance``, ``pod``); each serves exactly the
fake's figures for its own window (tests/process/test_prometheus.py). Scraped
live they refresh at their own moments, so their samples differ by timing and a
comparison of two live servers could only hold within a tolerance. Here the real
backfill writes the same history once per replica (``--label=instance=...``):
three days of ``--period=day``, which upstream answers in 15-minute buckets.
Prometheus *single* holds one replica's history, *pair* both, each with the
recording rules backfilled by promtool. Every panel query of both dashboards and
every recording and alerting rule, evaluated at the same instants on both
servers, gives the same figures: the same series, and values equal but for the
last bits of a sum that Prometheus takes over its series in another order
(``ROUNDING``); a replica counted twice would double a sum or a rate. The usage
dashboard's queries and the recording rules must have data at some instant (the
exceptions are listed with their reason; a backfill writes no team figures); the exporter
dashboard reads the exporter's own series, which a backfill does not write, and
an alert's expression has data only while it fires.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from exporter.upstream.demo import DemoAccount
from testkit.dashboards import (
    DASHBOARD_FILES,
    RULE_FILES,
    panel_queries,
    selectors,
    substitute,
)
from testkit.fake_upstream import FakeUpstream
from testkit.processes import Processes, clean_environment
from testkit.prometheus import (
    BUILDS,
    JOB,
    KEEP_EVERYTHING,
    RULE_PASSES,
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

ACCOUNT = "studio"
REPLICAS = ("replica-a:10097", "replica-b:10097")
DAYS = 3
# 15-minute samples: a one-hour window holds four, as a live panel's would hold a
# dozen five-minute refreshes.
RATE_WINDOW_SECONDS = 3600
DASHBOARD_RANGE = "1d"
# Prometheus offsets a group's evaluations from the grid (by a hash of its name):
# a minute apart, some evaluations fall within the lookback delta (5m) after each
# 15-minute sample, whatever the offset.
EVAL_INTERVAL = "1m"
# Queried this long after a sample: within the lookback delta of the raw sample,
# and after the recording rules' evaluations that saw it.
AFTER_SAMPLE = timedelta(seconds=150)
RECORDING_RULES = REPO_ROOT / "rules" / "scenario-recording.rules.yml"
# Sums of the same float values in another order differ in their last bits:
# relative, far below any real difference (a doubled figure is 100% off).
ROUNDING = 1e-12
# Queries that may have no data on this history, and why.
WHOLE_PERIOD = ("a user's consumption (and its split by action) is a whole-period figure "
                "upstream: one sample per period, never two in a rate window")
MAY_BE_EMPTY = {
    "scenario-usage:Users this period:C": WHOLE_PERIOD,
    "scenario-usage:Users by action this period:B": WHOLE_PERIOD,
}
# The backfill writes no team figures (upstream tells only the current billing
# period's): queries that read them, or recorded series made of nothing else, may
# be empty; a recorded series that also reads the exporter's own figures (the
# effective budget: a configured one here) must have data.


def team_recorded() -> set[str]:
    """Recorded series made of team figures only, directly or through other such."""
    rules = [rule for path in RULE_FILES
             for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
             for rule in group["rules"] if "record" in rule]
    found: set[str] = set()
    while True:
        more = {rule["record"] for rule in rules if rule["record"] not in found and
                {s.name for s in selectors(rule["expr"])} <= TEAM_SERIES | found}
        if not more:
            return found
        found |= more


TEAM_FIGURES = TEAM_SERIES | team_recorded()


def reads_team_figures(expr: str) -> bool:
    return any(s.name in TEAM_FIGURES for s in selectors(expr))


@dataclass(frozen=True)
class Query:
    """A query compared on both servers: its name, its PromQL, whether it must have data."""

    name: str
    expr: str
    needs_data: bool = True


def compared_queries() -> list[Query]:
    """Every panel query (variables set) and every rule's expression."""
    queries = [Query(str(q), substitute(q.expr, [ACCOUNT],
                                        rate_window_seconds=RATE_WINDOW_SECONDS,
                                        dashboard_range=DASHBOARD_RANGE),
                     q.dashboard == "scenario-usage" and str(q) not in MAY_BE_EMPTY
                     and not reads_team_figures(q.expr))
               for q in panel_queries()]
    for path in DASHBOARD_FILES:
        for annotation in json.loads(path.read_text(encoding="utf-8"))["annotations"]["list"]:
            if "expr" in annotation:
                queries.append(Query(f"{path.stem}:annotation {annotation['name']}",
                                     substitute(annotation["expr"], [ACCOUNT],
                                                rate_window_seconds=RATE_WINDOW_SECONDS,
                                                dashboard_range=DASHBOARD_RANGE),
                                     needs_data=False))  # marks a rare event
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                name = rule.get("record") or rule["alert"]
                recorded = "record" in rule and not reads_team_figures(rule["expr"])
                queries.append(Query(f"rule {name}", rule["expr"], recorded))
                if "record" in rule:
                    queries.append(Query(f"recorded {name}", name, name not in TEAM_FIGURES))
    return queries


QUERIES = compared_queries()


@dataclass
class Servers:
    single: Prometheus
    pair: Prometheus
    instants: list[float]


def days_before_today() -> tuple[datetime, datetime]:
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=DAYS), today


@pytest.fixture(scope="module", params=BUILDS)
def servers(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Both servers on Prometheus 2, then on Prometheus 3 (the test ids say which)."""
    build = require_build(request.param)
    tmp = tmp_path_factory.mktemp(f"replica-figures-{build}")
    start, end = days_before_today()
    with FakeUpstream(DemoAccount(models=12, users=6, api_keys=2)) as fake, \
            Processes() as processes:
        config = tmp / "accounts.yml"
        config.write_text(yaml.safe_dump({
            "scenario": {"api-url": fake.url}, "period": "day",
            "accounts": [{"name": ACCOUNT, "api_key": "test-key",
                          "api_secret": "test-secret-value",
                          "budget_creative_units": 50000.0,
                          # The money rules: backfilled, the CU this period at this price.
                          "price_per_creative_unit": 0.25}]}), encoding="utf-8")
        histories = []
        for replica in REPLICAS:
            output = tmp / f"{replica.partition(':')[0]}.om"
            run_tool([sys.executable, "-m", "exporter", "backfill", f"--config.file={config}",
                      f"--start={start:%Y-%m-%d}", f"--end={end:%Y-%m-%d}", f"--output={output}",
                      f"--label=job={JOB}", f"--label=instance={replica}"],
                     env=clean_environment(), cwd=REPO_ROOT)
            histories.append(output)
        started = {}
        for name, files in (("single", histories[:1]), ("pair", histories)):
            data = tmp / f"data-{name}"
            load_openmetrics(build, files, data)
            backfill_recording_rules(build, processes, data, RECORDING_RULES,
                                     [(start.timestamp(), end.timestamp())], EVAL_INTERVAL,
                                     tmp / f"rules-{name}", RULE_PASSES / str(build))
            started[name] = start_prometheus(build, processes, name,
                                             prometheus_config([], []), data, *KEEP_EVERYTHING)
        # Every three hours after the first, and after each day's last sample (the
        # only one with the users' consumption, stamped just before the day ends).
        instants = [(start + timedelta(hours=hours) + AFTER_SAMPLE).timestamp()
                    for hours in range(3, DAYS * 24, 3)]
        instants += [(start + timedelta(days=day) + AFTER_SAMPLE).timestamp()
                     for day in range(1, DAYS)]
        yield Servers(started["single"], started["pair"], sorted(instants))


Figures = dict[frozenset[tuple[str, str]], float]


def figures(server: Prometheus, expr: str, at: float) -> Figures:
    """The series of *expr* at *at*, by label set."""
    return {frozenset(sample["metric"].items()): float(sample["value"][1])
            for sample in server.query(expr, at)}


def same_figures(one: Figures, two: Figures) -> bool:
    """The same series with the same values, NaN equal to NaN, but for ``ROUNDING``."""
    return one.keys() == two.keys() and all(
        (math.isnan(a) and math.isnan(b)) or a == b or
        abs(a - b) <= ROUNDING * max(abs(a), abs(b))
        for a, b in ((one[key], two[key]) for key in one))


def test_the_history_holds_both_replicas(servers: Servers) -> None:
    at = servers.instants[len(servers.instants) // 2]
    for server, replicas in ((servers.single, REPLICAS[:1]), (servers.pair, REPLICAS)):
        result = server.query("count by (instance) (scenario_model_cost_creative_units_total)",
                              at)
        assert {s["metric"]["instance"] for s in result} == set(replicas)


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.name)
def test_a_second_replica_changes_no_figure(servers: Servers, query: Query) -> None:
    seen_data = False
    for at in servers.instants:
        one, two = figures(servers.single, query.expr, at), figures(servers.pair, query.expr, at)
        assert same_figures(one, two), f"{query.name} at {at}:\n  single {one}\n  pair   {two}"
        seen_data = seen_data or bool(one)
    if query.needs_data:
        assert seen_data, f"{query.name}: no data at any instant\n{query.expr}"
