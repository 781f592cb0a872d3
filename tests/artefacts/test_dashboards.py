"""Structural checks of the Grafana dashboards in dashboards/.

They must import as they are and provision by file or by the Grafana sidecar
(a datasource variable, no ``__inputs``), follow the project's query
conventions (every selector filtered by ``$account``, counters only inside
rate()/increase(), ranges through ``$__rate_interval``). tests/test_mixin.py checks
that they are what mixin/ generates. The PromQL checks read each query through
a real PromQL parser (promql-parser, the Rust parser's Python binding).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mixin.config import BUSINESS_COUNTERS, MixinConfig
from mixin.panel_queries import PanelQueries
from mixin.promql import period_change
from testkit.dashboards import (
    RANGE_VARIABLES,
    Selector,
    exprs,
    panels,
    recorded_series,
    selectors,
)
from testkit.repo import REPO_ROOT

DASHBOARD_FILES = sorted((REPO_ROOT / "dashboards").glob("*.json"))
DASHBOARDS = {path.name: json.loads(path.read_text(encoding="utf-8"))
              for path in DASHBOARD_FILES}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ACCOUNT_MATCHER = 'account=~"$account"'
JOB_MATCHER = 'job=~"$job"'
# Series without an account label: the exporter's own, one per process.
# Series that Prometheus itself records for each target it scrapes.
PROMETHEUS_OWN = {"scrape_duration_seconds"}
NO_ACCOUNT_LABEL = {"scenario_exporter_build_info", *PROMETHEUS_OWN}
COUNTER_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


# -- selectors, from a real PromQL parser ------------------------------------------


def test_selectors_finds_names_matchers_ranges_and_functions() -> None:
    expr = ('sum by (account, model_id) (rate(a_total{account=~"$account", x="}"}'
            '[$__rate_interval])) * 3600\nand on (account, model_id)\n'
            '  topk(10, sum by (account) '
            '(increase(a_total{account=~"$account"}[$__range] @ end())))'
            '\n* on (account) group_left (model_name)\n  group by (account, model_name) (info)'
            '\nor on (account)\n'
            'label_replace(b:rec:x{account=~"$account"}, "n", "$1", "m", "(.*)")'
            ' - 2.5e3 + time() - c offset 1h'
            ' or clamp_min(delta(d_total[$__rate_interval]), 0) / ($__rate_interval_ms / 1000)'
            ' - e_total offset $__rate_interval')
    found = selectors(expr)
    assert [(s.name, s.range, s.function) for s in found] == [
        ("a_total", "$__rate_interval", "rate"),
        ("a_total", "$__range", "increase"),
        ("info", None, "group"),
        ("b:rec:x", None, "label_replace"),
        ("c", None, None),
        ("d_total", "$__rate_interval", "delta"),
        ("e_total", None, None),
    ]
    assert found[0].matchers == {'account=~"$account"', 'x="}"'}
    assert found[1].at == "end()" and found[0].at is None
    assert found[4].offset == timedelta(hours=1)
    assert found[6].offset == RANGE_VARIABLES["$__rate_interval"]


# -- the dashboards ----------------------------------------------------------------


def documented_metrics() -> set[str]:
    text = (REPO_ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    return set(re.findall(r"`(scenario_[a-z0-9_]+)`", text))


def test_the_dashboards_are_there() -> None:
    assert set(DASHBOARDS) == {"scenario-usage.json", "scenario-exporter.json"}


def test_uids_and_titles_are_unique_and_fixed() -> None:
    uids = [d["uid"] for d in DASHBOARDS.values()]
    titles = [d["title"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)
    for uid in uids:
        assert re.fullmatch(r"[a-z0-9-]{1,40}", uid), uid


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_imports_and_provisions_as_is(name: str) -> None:
    dashboard = DASHBOARDS[name]
    # No placeholders of Grafana's "export for sharing externally".
    assert not {"__inputs", "__requires", "__elements"} & set(dashboard)
    assert "${DS_" not in json.dumps(dashboard)
    assert dashboard["id"] is None
    assert dashboard["schemaVersion"] >= 39
    assert "scenario" in dashboard["tags"]
    assert dashboard["description"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource = variables["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    job, account = variables["job"], variables["account"]
    for variable in (job, account):
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["multi"] is True and variable["includeAll"] is True
        assert variable["current"]["value"] == ["$__all"]
    assert job["query"] == "label_values(scenario_up, job)"
    assert account["query"] == 'label_values(scenario_up{job=~"$job"}, account)'
    links = [link for link in dashboard["links"] if link["type"] == "dashboards"]
    assert links and all("scenario" in link["tags"] for link in links)


def _datasource_references(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from _datasource_references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasource_references(value)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_datasource_is_the_variable(name: str) -> None:
    for reference in _datasource_references(DASHBOARDS[name]):
        assert reference in (DATASOURCE, {"type": "grafana", "uid": "-- Grafana --"}), reference


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_has_title_description_unit_and_queries(name: str) -> None:
    for panel in panels(DASHBOARDS[name]):
        title = panel.get("title")
        assert title, panel
        assert panel.get("description", "").strip(), title
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert isinstance(unit, str) and unit, title
        assert panel["datasource"] == DATASOURCE, title
        assert panel["targets"], title
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), title
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, title
            assert target["expr"].strip(), title


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_have_unique_ids_and_titles_and_do_not_overlap(name: str) -> None:
    dashboard = DASHBOARDS[name]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in panels(dashboard)]
    assert len(titles) == len(set(titles)), "panels are told apart by title (and in the e2e)"
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_query_is_filtered_by_job_and_account(name: str) -> None:
    for where, expr in exprs(DASHBOARDS[name]):
        found = selectors(expr)
        assert any(ACCOUNT_MATCHER in s.matchers for s in found), where
        for selector in found:
            assert JOB_MATCHER in selector.matchers, f"{where}: {selector.name}"
            if selector.name not in NO_ACCOUNT_LABEL:
                assert ACCOUNT_MATCHER in selector.matchers, f"{where}: {selector.name}"


def _is_period_counter(name: str) -> bool:
    return name.endswith("_total") and not name.startswith("scenario_exporter_")


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_period_counter_rates_are_replica_safe_and_skip_revisions(name: str) -> None:
    """A rate of a period counter is deduplicated across replicas before it is summed,
    and is the recording rules' figure over Grafana's window: the counter now less a
    window ago (a downward revision lowers it, where rate() would read a reset and
    spike), across a new period the old one's last value added, rate() only for the
    rest (tests/artefacts/test_mixin.py checks the whole expression)."""
    window = RANGE_VARIABLES["$__rate_interval"]
    rates = 0
    for where, expr in exprs(DASHBOARDS[name]):
        found = selectors(expr)
        for selector in found:
            if selector.function != "max_over_time" or not _is_period_counter(selector.name):
                continue
            rates += 1
            ago = Selector(selector.name, selector.matchers, None, "clamp_min", offset=window)
            assert ago in found, f"{where}: {selector.name} a window ago"
            lowest = Selector(selector.name, selector.matchers, "$__rate_interval",
                              "min_over_time")
            assert lowest in found, f"{where}: {selector.name}'s lowest value in the window"
            assert ") / ($__rate_interval_ms / 1000)" in expr, where
            assert "max without (instance, pod)" in expr, where
            assert "scenario_period_start_timestamp_seconds" in expr, where
    if name == "scenario-usage.json":  # the exporter's own dashboard has none
        assert rates >= 10


def test_another_deployment_label_is_one_option_away(tmp_path: Path) -> None:
    """Regenerated with --deployment-label cluster, every query selects and keeps
    `cluster` instead of `job`."""
    subprocess.run([sys.executable, "-m", "mixin", "--deployment-label", "cluster",
                    "--output-dir", str(tmp_path)], cwd=REPO_ROOT, check=True,
                   capture_output=True, timeout=60)
    paths = sorted((tmp_path / "dashboards").glob("*.json"))
    assert [path.name for path in paths] == sorted(DASHBOARDS)
    for path in paths:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        variables = [v["name"] for v in dashboard["templating"]["list"]]
        assert variables == ["datasource", "cluster", "account"]
        for where, expr in exprs(dashboard):
            assert "$job" not in expr, where
            for selector in selectors(expr):
                assert 'cluster=~"$cluster"' in selector.matchers, f"{where}: {selector.name}"
            assert "by (cluster, account" in expr or "by (" not in expr \
                or "count by (version" in expr, where


def _without_period_changes(expr: str) -> str:
    """*expr* with each spend-over-a-window expression of a business counter (the
    mixin's period_change, over Grafana's window) replaced by ``vector(0)``."""
    queries = PanelQueries(MixinConfig())
    spaced = re.sub(r"\s+", " ", expr)
    for selector in selectors(expr):
        if selector.name in BUSINESS_COUNTERS and selector.function == "max_over_time":
            only = sorted(selector.matchers - set(queries.matchers()))
            idiom = period_change(MixinConfig(), selector.name, MixinConfig().dashboard_window,
                                  queries.matchers(), only=only, increase=True)
            spaced = spaced.replace(re.sub(r"\s+", " ", idiom), "vector(0)")
    return spaced


# mixin.promql.day_last: a series' last value in the day after a 00:00 UTC step.
_DAY_LAST = re.compile(r"last_over_time\((?P<series>[^\[\]()]+)\[1d\] offset -[12]d\)")


def _without_day_last_values(expr: str) -> str:
    """*expr* with each day's last value (mixin.promql.day_last, which "Spend by period"
    reads on a 1d step: a period's total on its last day) replaced by ``vector(0)``."""
    return _DAY_LAST.sub("vector(0)", expr)


def test_day_last_values_are_the_only_other_readings() -> None:
    expr = 'max by (job) (last_over_time(a_total{job=~"$job"}[1d] offset -2d)) or b_total'
    assert _without_day_last_values(expr) == "max by (job) (vector(0)) or b_total"
    assert _without_day_last_values("last_over_time(a_total[1d] offset 1d)") == \
        "last_over_time(a_total[1d] offset 1d)", "a day back is no period's total"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_counters_only_inside_rate_or_increase(name: str) -> None:
    """A counter is never drawn as it is: only through rate() or increase(), or, for a
    business counter, the spend over Grafana's window that the rules compute too, or its
    last value of a day (the total of a period, read on the period's last day)."""
    for where, expr in exprs(DASHBOARDS[name]):
        for selector in selectors(_without_period_changes(_without_day_last_values(expr))):
            if selector.name.endswith(COUNTER_SUFFIXES):
                assert selector.function in ("rate", "increase"), f"{where}: {selector.name}"
                assert selector.range is not None, f"{where}: {selector.name}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_ranges_come_from_grafana(name: str) -> None:
    """rate() over $__rate_interval; totals over the dashboard's range through
    increase(...[$__range] @ end()), which ranks models once for the whole graph; a day's
    last value over the day after the step (a 1d step of "Spend by period")."""
    for where, expr in exprs(DASHBOARDS[name]):
        for selector in selectors(_without_day_last_values(expr)):
            if selector.range is None:
                continue
            if selector.range == "$__range":
                assert selector.function == "increase", where
                assert selector.at == "end()", where
            else:
                assert selector.range == "$__rate_interval", f"{where}: [{selector.range}]"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_rate_panels_have_a_minimum_interval(name: str) -> None:
    """The exporter refreshes every --cache.ttl (5m by default): shorter windows flicker."""
    for panel in panels(DASHBOARDS[name]):
        uses_rate = any("[$__rate_interval]" in t["expr"] for t in panel["targets"])
        if uses_rate and panel["type"] == "timeseries":
            assert panel.get("interval") == "5m", panel["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_series_is_documented_or_recorded(name: str) -> None:
    recorded, documented = recorded_series(), documented_metrics()
    for where, expr in exprs(DASHBOARDS[name]):
        for selector in selectors(expr):
            if ":" in selector.name:
                assert selector.name in recorded, f"{where}: {selector.name} is not recorded"
            else:
                base = re.sub(r"_(bucket|count|sum)$", "", selector.name)
                assert base in documented or base in PROMETHEUS_OWN, \
                    f"{where}: {selector.name} is not in docs/metrics.md"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_tables_name_their_columns_consistently(name: str) -> None:
    """Grafana's organize transformation keys every option by the original field name
    (a label, or "Value #<refId>"); overrides and sorting see the renamed one."""
    for panel in panels(DASHBOARDS[name]):
        if panel["type"] != "table":
            continue
        (organize,) = [t["options"] for t in panel["transformations"] if t["id"] == "organize"]
        renamed = organize["renameByName"]
        values = {f"Value #{t['refId']}" for t in panel["targets"]}
        assert values <= set(renamed), panel["title"]
        assert set(organize["indexByName"]) <= set(renamed), panel["title"]
        shown = set(renamed.values())
        for override in panel["fieldConfig"]["overrides"]:
            assert override["matcher"]["options"] in shown, panel["title"]
        for sort in panel["options"]["sortBy"]:
            assert sort["displayName"] in shown, panel["title"]


def test_the_usage_dashboard_covers_the_issue() -> None:
    usage = DASHBOARDS["scenario-usage.json"]
    by_title = {p["title"]: p for p in panels(usage)}
    assert by_title["Spend this period"]["type"] == "stat"
    assert by_title["Budget used"]["type"] == "gauge"
    assert by_title["Budget used"]["fieldConfig"]["defaults"]["unit"] == "percent"
    assert by_title["Users this period"]["type"] == "table"
    stacked = by_title["Spend rate by model (top 10)"]
    assert stacked["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    assert "scenario_model_info" in stacked["targets"][0]["expr"]
    assert "scenario_user_info" in by_title["Users this period"]["targets"][0]["expr"]
    text = json.dumps(usage)
    for metric in ("scenario_model_jobs_total", "scenario_model_cost_by_api_key_creative_units",
                   "scenario_assets_created_total", "scenario_usage_total",
                   "scenario_nsfw_assets_total", "scenario_model_discount_creative_units",
                   "projected_at_period_end"):
        assert metric in text, metric


def test_the_usage_dashboard_shows_spend_by_action_credits_and_quality_gate_verdicts() -> None:
    by_title = {p["title"]: p for p in panels(DASHBOARDS["scenario-usage.json"])}
    net = by_title["Spend rate by action"]
    custom = net["fieldConfig"]["defaults"]["custom"]
    # A refund's net rate is negative: drawn below 0, not stacked, no floor at 0.
    assert custom["stacking"]["mode"] == "none" and "min" not in net["fieldConfig"]["defaults"]
    (expr,) = [t["expr"] for t in net["targets"]]
    assert "scenario_usage_credit_creative_units_total" in expr.split("- on (")[1]
    credits = by_title["Refunds and credits"]["targets"][0]["expr"]
    assert "scenario_usage_credit_creative_units_total" in credits
    verdicts = by_title["Quality Gate verdicts"]["targets"][0]["expr"]
    assert 'verdict!="total"' in verdicts, "total counts every scored asset: never added"
    ratio = by_title["Quality Gate fail ratio"]
    assert ratio["fieldConfig"]["defaults"]["unit"] == "percent"
    (expr,) = [t["expr"] for t in ratio["targets"]]
    assert 'verdict="fail"' in expr and 'verdict="total"' in expr
    assert re.search(r"\) > 0\n\)$", expr), "no data rather than a division by zero"
    actions = by_title["Users by action this period"]
    assert actions["type"] == "table"
    assert "account_user_id_action:scenario_user_consumption_by_action_creative_units:" \
           "period_to_date" in actions["targets"][0]["expr"]
    assert "scenario_user_info" in actions["targets"][0]["expr"]
    assert "account_usage_name:scenario_usage_net_creative_units:period_to_date" in \
        by_title["Actions this period"]["targets"][0]["expr"]


def test_the_exporter_dashboard_covers_the_issue() -> None:
    text = json.dumps(DASHBOARDS["scenario-exporter.json"])
    for fragment in ("scenario_up", "time() - max by (job, account) "
                     "(scenario_data_as_of_timestamp_seconds",
                     "scenario_exporter_upstream_requests_total",
                     "histogram_quantile(0.99", "scenario_exporter_upstream_response_bytes",
                     "6000000", "scenario_exporter_refresh_failures_total",
                     "scenario_exporter_folded_series",
                     "scrape_duration_seconds{"):
        assert fragment in text, fragment
