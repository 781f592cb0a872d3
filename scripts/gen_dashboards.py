#!/usr/bin/env python3
"""Generate the Grafana dashboards of dashboards/ from the definitions below.

    python3 scripts/gen_dashboards.py           # (re)write dashboards/*.json
    python3 scripts/gen_dashboards.py --check   # exit 1 if a committed file differs

The JSON files are committed: users import or provision them as they are
(Grafana UI, file provisioning, the Grafana sidecar of kube-prometheus-stack,
the Helm chart). tests/test_dashboards.py fails when they are not up to date.

Conventions that every panel follows (and the tests check):
- datasource through the `datasource` variable, every query filtered with
  job=~"$job" and account=~"$account", and grouped by both (two deployments
  never add up; --deployment-label picks another label than job);
- replicas counted once: max without (instance, pod) before any sum; period
  counters rated per series, a window with a downward revision filled with its
  net change (see Queries.period_rate), as the recording rules do;
- counters only inside rate()/increase(); period-to-date figures (a counter's
  raw value) through the recording rules of rules/scenario-recording.rules.yml;
- rates over $__rate_interval, shown per hour; a 5m minimum interval on rate
  panels, because the exporter refreshes its data every --cache.ttl (5m by
  default) and a shorter window would alternate between 0 and spikes;
- a title, a description and a unit on every panel.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = REPO_ROOT / "dashboards"

SCHEMA_VERSION = 39  # Grafana 11.0
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The labels that only say which replica serves a series: the target's address,
# and the pod that kube-prometheus adds.
REPLICAS = "instance, pod"
RATE_WINDOW = "$__rate_interval"
# The length of $__rate_interval in seconds, from a global variable of Grafana.
RATE_WINDOW_SECONDS = "($__rate_interval_ms / 1000)"
MIN_INTERVAL = "5m"  # the exporter's default --cache.ttl
TAGS = ["scenario", "scenario-exporter"]
TOP_N = 10
RESPONSE_LIMIT_BYTES = 6_000_000  # the API gateway's 6 MB synchronous response limit

CU = "suffix: CU"
CU_PER_HOUR = "suffix: CU/h"


# -- PromQL helpers ------------------------------------------------------------

def indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line if line else line for line in text.splitlines())


def per_hour(expr: str) -> str:
    """A per-second rate as a per-hour one. Composite expressions (the multi-line ones)
    are parenthesised: they may end with ``or``/``-``, which bind looser than ``*``."""
    return f"(\n{indent(expr)}\n) * 3600" if "\n" in expr else f"{expr} * 3600"


PTD_COST = "account:scenario_model_cost_creative_units:period_to_date"
PTD_API_COST = "account:scenario_model_cost_by_api_key_creative_units:period_to_date"
PTD_DISCOUNT = "account:scenario_model_discount_creative_units:period_to_date"
PTD_MODEL_COST = "account_model_id:scenario_model_cost_creative_units:period_to_date"
PTD_USER = "account_user_id:scenario_user_consumption_creative_units:period_to_date"
PTD_USER_DISCOUNT = "account_user_id:scenario_user_discount_creative_units:period_to_date"
RATE1H = "account:scenario_model_cost_creative_units:rate1h"
RATE1H_MODEL = "account_model_id:scenario_model_cost_creative_units:rate1h"
PROJECTED = "account:scenario_model_cost_creative_units:projected_at_period_end"
COST = "scenario_model_cost_creative_units_total"
API_COST = "scenario_model_cost_by_api_key_creative_units_total"
PERIOD_START_METRIC = "scenario_period_start_timestamp_seconds"
# The label that tells the series of each period counter apart within an account.
ID_LABELS = {COST: "model_id", API_COST: "model_id",
             "scenario_model_discount_creative_units_total": "model_id",
             "scenario_model_jobs_total": "model_id", "scenario_assets_created_total": "kind",
             "scenario_nsfw_assets_total": "label", "scenario_usage_total": "usage_name",
             "scenario_user_consumption_creative_units_total": "user_id"}


@dataclass(frozen=True)
class Queries:
    """The PromQL of the dashboards, for one label that tells deployments apart.

    Every query selects ``<deployment>=~"$<deployment>"`` and ``account=~"$account"``
    and keeps both labels, so that two deployments (staging and production, two
    clusters behind one Thanos) never add up. Series are first deduplicated across
    the labels that only say which replica serves them (``max without (instance,
    pod)``), then summed or rated: a second replica changes no figure.
    """

    deployment: str = "job"

    @property
    def keys(self) -> str:
        """The labels every figure is kept apart by: ``job, account``."""
        return f"{self.deployment}, account"

    @property
    def legend(self) -> str:
        return f"{{{{account}}}} ({{{{{self.deployment}}}}})"

    def by(self, *extra: str) -> str:
        return ", ".join((self.keys, *extra))

    def sel(self, metric: str, *matchers: str, account: bool = True) -> str:
        """``metric{job=~"$job", account=~"$account", ...}``."""
        own = [f'{self.deployment}=~"${self.deployment}"']
        if account:
            own.append('account=~"$account"')
        return f"{metric}{{{', '.join((*own, *matchers))}}}"

    def latest(self, metric: str) -> str:
        """A gauge that every replica serves alike, once per deployment and account."""
        return f"max by ({self.keys}) ({self.sel(metric)})"

    def period_rate(self, metric: str, *matchers: str) -> str:
        """Per-second rate of one of the exporter's period counters, per series.

        rate() reads any decrease as a counter reset. A period counter goes down
        when a new period starts (the period start moves), and also when upstream
        revises a value down within a period; there rate() would count the whole
        period-to-date value as new: a spike that did not happen. Where a series
        went down while the period start did not move, the window's net change is
        used instead, never below 0: what the recording rules do.
        """
        window = f"{self.sel(metric, *matchers)}[{RATE_WINDOW}]"
        rollover = f"changes({self.sel(PERIOD_START_METRIC)}[{RATE_WINDOW}]) > 0"
        return (f"rate({window})\n"
                f"unless (\n  resets({window}) > 0\n"
                f"  unless ignoring ({ID_LABELS[metric]})\n"
                f"  {rollover}\n)\n"
                f"or\nclamp_min(delta({window}), 0) / {RATE_WINDOW_SECONDS}")

    def deployment_and(self, labels: str) -> str:
        names = [name.strip() for name in labels.split(",")]
        return ", ".join(dict.fromkeys([self.deployment, *names]))

    def rate_sum(self, metric: str, *by: str) -> str:
        """Per-second rate of a period counter, deduplicated across replicas, summed by
        deployment, account and *by*."""
        return (f"sum by ({self.by(*by)}) (\n  max without ({REPLICAS}) (\n"
                f"{indent(self.period_rate(metric), '    ')}\n  )\n)")

    def process_rate_sum(self, metric: str, *by: str) -> str:
        """Per-second rate of one of the exporter's own counters, summed over replicas:
        each replica calls upstream on its own, so their calls add up."""
        return f"sum by ({self.by(*by)}) (rate({self.sel(metric)}[{RATE_WINDOW}]))"

    def ranking(self, counter: str) -> str:
        """The TOP_N models of *counter* over the dashboard range, ranked once for the
        whole range (``@ end()``), so the same models are drawn from one end of the
        graph to the other."""
        return (f"topk({TOP_N}, max by ({self.by('model_id')}) "
                f"(increase({self.sel(counter)}[$__range] @ end())))")

    def top_models(self, expr: str, counter: str) -> str:
        """*expr* (by deployment, account, model_id) for the TOP_N models of *counter*."""
        return f"{expr}\nand on ({self.by('model_id')})\n  {self.ranking(counter)}"

    def other_models(self, counter: str) -> str:
        """The rate of every model outside the TOP_N, so that a stacked graph adds up to
        the total."""
        return per_hour(f"sum by ({self.keys}) (\n"
                        f"  max without ({REPLICAS}) (\n"
                        f"{indent(self.period_rate(counter), '    ')}\n  )\n"
                        f"  unless on ({self.by('model_id')})\n  {self.ranking(counter)}\n)")

    def with_model_names(self, expr: str) -> str:
        """Add ``model_name`` from scenario_model_info to *expr* (by deployment, account,
        model_id).

        A model without an info series (no name upstream, or ``__other__``, where the
        cardinality cap folds the smallest models) keeps its id as name instead of
        disappearing, as a plain ``group_left`` join would make it.
        """
        keys = self.by("model_id")
        names = (f"group by ({self.by('model_id', 'model_name')}) "
                 f"({self.sel('scenario_model_info')})")
        fallback = ("label_replace(\n  label_replace(\n"
                    f"{indent(expr, '    ')},\n"
                    '    "model_name", "$1", "model_id", "(.*)"\n  ),\n'
                    '  "model_name", "all other models (folded)", "model_id", "__other__"\n)')
        return (f"(\n{indent(expr)}\n)\n* on ({keys}) group_left (model_name)\n"
                f"  {names}\nor on ({keys})\n{fallback}")

    def with_user_names(self, expr: str) -> str:
        """Add ``is_api_key`` and, when the exporter runs with --metrics.user-identity,
        ``user_name`` from scenario_user_info to *expr* (by deployment, account, user_id)."""
        keys = self.by("user_id")
        info = (f"group by ({self.by('user_id', 'user_name', 'is_api_key')}) "
                f"({self.sel('scenario_user_info')})")
        return (f"(\n{indent(expr)}\n)\n* on ({keys}) group_left (user_name, is_api_key)\n"
                f"  {info}\nor on ({keys})\n{expr}")


# -- panels ----------------------------------------------------------------------

def target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False,
           table: bool = False) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "format": "table" if table else "time_series",
        "instant": instant,
        "range": not instant,
        "legendFormat": legend,
        "refId": ref,
    }


def targets(*specs: tuple[str, str]) -> list[dict[str, Any]]:
    """Targets A, B, C... from ``(expr, legend)`` pairs."""
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(specs)]


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in steps]}


GREEN_ONLY = thresholds((None, "green"))


@dataclass
class Panel:
    """A Grafana panel before layout: everything but its id and position."""

    type: str
    title: str
    description: str
    unit: str
    targets: list[dict[str, Any]]
    width: int
    height: int
    options: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        return {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": self.unit, **self.defaults},
                            "overrides": self.overrides},
            "options": self.options,
            **self.extra,
            "targets": self.targets,
        }


@dataclass
class Row:
    title: str


def _reduce(calc: str = "lastNotNull") -> dict[str, Any]:
    return {"calcs": [calc], "fields": "", "values": False}


def stat(title: str, description: str, unit: str, expr: str, legend: str, *,
         steps: dict[str, Any] = GREEN_ONLY, graph: bool = True, decimals: int | None = 0,
         mappings: list[dict[str, Any]] | None = None, text_mode: str = "auto",
         width: int = 3, height: int = 4) -> Panel:
    defaults: dict[str, Any] = {"color": {"mode": "thresholds"}, "thresholds": steps,
                                "mappings": mappings or []}
    if decimals is not None:
        defaults["decimals"] = decimals
    return Panel("stat", title, description, unit, [target(expr, legend)], width, height,
                 options={"reduceOptions": _reduce(), "orientation": "auto",
                          "textMode": text_mode, "colorMode": "value",
                          "graphMode": "area" if graph else "none", "justifyMode": "auto",
                          "wideLayout": True, "showPercentChange": False},
                 defaults=defaults)


def gauge(title: str, description: str, expr: str, legend: str, *,
          width: int = 3, height: int = 4) -> Panel:
    return Panel("gauge", title, description, "percent", [target(expr, legend)], width, height,
                 options={"reduceOptions": _reduce(), "orientation": "auto",
                          "showThresholdLabels": False, "showThresholdMarkers": True,
                          "minVizWidth": 75, "minVizHeight": 75, "sizing": "auto"},
                 defaults={"min": 0, "max": 100, "decimals": 1, "color": {"mode": "thresholds"},
                           "thresholds": thresholds((None, "green"), (80, "orange"),
                                                    (100, "red"))})


def timeseries(title: str, description: str, unit: str, specs: list[tuple[str, str]], *,
               stacked: bool = False, bars: bool = False, rate: bool = True,
               width: int = 12, height: int = 9, steps: dict[str, Any] = GREEN_ONLY,
               threshold_style: str = "off", overrides: list[dict[str, Any]] | None = None,
               legend_calcs: tuple[str, ...] = ("mean", "max", "lastNotNull"),
               minimum: float | None = 0) -> Panel:
    custom: dict[str, Any] = {
        "drawStyle": "bars" if bars else "line",
        "lineInterpolation": "linear",
        "lineWidth": 1,
        "fillOpacity": 80 if bars else (60 if stacked else 10),
        "gradientMode": "none",
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
        "axisPlacement": "auto",
        "axisLabel": "",
        "thresholdsStyle": {"mode": threshold_style},
    }
    defaults: dict[str, Any] = {"color": {"mode": "palette-classic"}, "custom": custom,
                                "thresholds": steps}
    if minimum is not None:
        defaults["min"] = minimum
    return Panel(
        "timeseries", title, description, unit, targets(*specs), width, height,
        options={"legend": {"showLegend": True, "displayMode": "table", "placement": "bottom",
                            "calcs": list(legend_calcs),
                            "sortBy": "Mean" if "mean" in legend_calcs else "Last *",
                            "sortDesc": True},
                 "tooltip": {"mode": "multi", "sort": "desc"}},
        defaults=defaults, overrides=overrides or [],
        extra={"interval": MIN_INTERVAL} if rate else {})


def table(title: str, description: str, unit: str, columns: list[tuple[str, str, str]],
          hidden: tuple[str, ...], renames: dict[str, str], order: list[str], *,
          width: int = 24, height: int = 10) -> Panel:
    """An instant table: one query per value column ``(expr, column name, unit)``,
    merged on their labels."""
    column_targets = [target(expr, "", chr(ord("A") + i), instant=True, table=True)
                      for i, (expr, _, _) in enumerate(columns)]
    value_names = {f"Value #{chr(ord('A') + i)}": name for i, (_, name, _) in enumerate(columns)}
    names = {**renames, **value_names}
    original = {shown: name for name, shown in names.items()}
    first = columns[0][1]
    bar = {"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "basic",
                                                 "valueDisplayMode": "text"}}
    overrides = [{"matcher": {"id": "byName", "options": name},
                  "properties": [{"id": "unit", "value": column_unit},
                                 {"id": "decimals", "value": 0},
                                 *([bar] if name == first else [])]}
                 for (_, name, column_unit) in columns]
    return Panel(
        "table", title, description, unit, column_targets, width, height,
        options={"showHeader": True, "cellHeight": "sm",
                 "footer": {"show": True, "reducer": ["sum"], "fields": "",
                            "countRows": False},
                 "sortBy": [{"displayName": first, "desc": True}]},
        defaults={"custom": {"align": "auto", "cellOptions": {"type": "auto"}},
                  "color": {"mode": "continuous-BlPu"}, "thresholds": GREEN_ONLY},
        overrides=overrides,
        extra={"transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                # __name__: a fallback row of a join keeps its recorded series' name.
                "excludeByName": {name: True for name in ("Time", "__name__", *hidden)},
                "renameByName": names,
                # Keyed by the fields' names before renaming, like the other options.
                "indexByName": {original[name]: i for i, name in enumerate(order)},
            }},
        ]})


def by_ref(ref: str, *properties: tuple[str, Any]) -> dict[str, Any]:
    return {"matcher": {"id": "byFrameRefID", "options": ref},
            "properties": [{"id": key, "value": value} for key, value in properties]}


DASHED = ("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})
DOTTED = ("custom.lineStyle", {"fill": "dot", "dash": [0, 10]})


def fixed_color(color: str) -> tuple[str, Any]:
    return ("color", {"mode": "fixed", "fixedColor": color})


# -- layout ----------------------------------------------------------------------

def layout(items: list[Panel | Row]) -> list[dict[str, Any]]:
    """Place panels left to right on Grafana's 24-column grid; a Row starts a new line."""
    panels: list[dict[str, Any]] = []
    x = y = line_height = 0
    for panel_id, item in enumerate(items, start=1):
        if isinstance(item, Row):
            y += line_height
            panels.append({"id": panel_id, "type": "row", "title": item.title, "collapsed": False,
                           "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
            x, y, line_height = 0, y + 1, 0
            continue
        if x + item.width > 24:
            x, y, line_height = 0, y + line_height, 0
        panels.append(item.render(panel_id, x, y))
        x += item.width
        line_height = max(line_height, item.height)
    return panels


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    """A multi-select query variable, All by default."""
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            # A string rather than the editor's object: every Grafana version reads it.
            "definition": query, "query": query,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "includeAll": True, "multi": True, "hide": 0, "options": [], "refresh": 2,
            "regex": "", "sort": 1, "skipUrlSync": False}


def dashboard(q: Queries, uid: str, title: str, description: str, items: list[Panel | Row], *,
              extra_tags: list[str], timezone: str, annotations: list[dict[str, Any]]
              ) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS + extra_tags,
        "id": None,
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "5m",
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-7d", "to": "now"},
        "timepicker": {},
        "timezone": timezone,
        "weekStart": "",
        "links": [{"title": "Scenario dashboards", "type": "dashboards", "tags": ["scenario"],
                   "asDropdown": False, "includeVars": True, "keepTime": True,
                   "targetBlank": False, "icon": "external link", "tooltip": "", "url": ""}],
        "annotations": {"list": [
            {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
             "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
             "name": "Annotations & Alerts", "type": "dashboard"},
            *annotations,
        ]},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0, "includeAll": False,
             "multi": False, "options": [], "refresh": 1, "regex": "", "skipUrlSync": False},
            variable(q.deployment, q.deployment.title(),
                     f"label_values(scenario_up, {q.deployment})"),
            variable("account", "Account", f"label_values({q.sel('scenario_up', account=False)}, "
                                           "account)"),
        ]},
        "panels": layout(items),
    }


# -- the usage dashboard ---------------------------------------------------------

def usage_dashboard(q: Queries) -> dict[str, Any]:
    ptd = q.sel(PTD_COST)
    budget = q.latest("scenario_budget_creative_units")
    period_start = q.latest(PERIOD_START_METRIC)
    period_end = q.latest("scenario_period_end_timestamp_seconds")
    on = f"on ({q.keys})"
    budget_used = f"100 * {ptd}\n/ {on}\n{budget}"
    even_pace = (f"{budget}\n* {on} (time() - {period_start})\n"
                 f"/ {on} ({period_end} - {on} {period_start})")
    web_app_ptd = f"{ptd}\n- {on}\n{q.sel(PTD_API_COST)}"
    top_spend = q.with_model_names(q.top_models(per_hour(q.rate_sum(COST, "model_id")), COST))
    jobs = "scenario_model_jobs_total"
    discounts = "scenario_model_discount_creative_units_total"
    model_legend = f"{{{{model_name}}}} · {q.legend}"
    items: list[Panel | Row] = [
        Row("This period"),
        stat("Spend this period",
             "Creative Units spent since the current billing period began, gross (before "
             "discounts): the figure Scenario bills. It is the raw value of the exporter's "
             "period counters, read by the recording rule "
             f"{PTD_COST}, and falls back to about 0 when a new period starts.",
             CU, ptd, q.legend),
        stat("Budget",
             "The Creative Unit budget of the period, as configured in the exporter "
             "(--budget.creative-units, or budget_creative_units per account in the "
             "configuration file). No data when no budget is set.",
             CU, budget, q.legend, graph=False),
        gauge("Budget used",
              "Share of the period's budget spent so far (gross cost over budget). "
              "ScenarioBudgetExhausted fires at 100%.", budget_used, q.legend),
        stat("Budget left",
             "Budget minus the spend of this period. Negative (red) once the budget is "
             "exceeded.",
             CU, f"{budget}\n- {on}\n{ptd}", q.legend,
             steps=thresholds((None, "red"), (0, "green"))),
        stat("Projected spend at period end",
             "Spend this period plus the rate of the last 24 hours over the time left in "
             f"the period (recording rule {PROJECTED}). Compare with the budget; "
             "ScenarioBudgetForecastExceeded fires when it stays above for 3 hours. Low "
             "during Prometheus' first day, which lacks a full day of history.",
             CU, q.sel(PROJECTED), q.legend, steps=thresholds((None, "blue"))),
        stat("Spend rate, last hour",
             "Creative Units per hour, averaged over the last hour, all models together "
             f"(recording rule {RATE1H}).",
             CU_PER_HOUR, per_hour(q.sel(RATE1H)), q.legend),
        stat("Discounts this period",
             "Creative Units discounted since the period began, summed over models "
             f"(recording rule {PTD_DISCOUNT}). Shown as a positive amount.",
             CU, q.sel(PTD_DISCOUNT), q.legend, steps=thresholds((None, "purple"))),
        stat("Period ends in",
             "Time left until the current billing period ends and the counters start again "
             "from 0, as the exporter computes it for its --period and --period.anchor-day "
             "(scenario_period_end_timestamp_seconds).",
             "s", f"{period_end} - time()", q.legend, graph=False, decimals=None,
             steps=thresholds((None, "text"))),
        timeseries(
            "Spend this period vs budget",
            "Cumulative spend of the current period (it drops to 0 when a period starts), "
            "the budget, the even pace (where spend would be if the budget were spread "
            "evenly over the period) and the projected total at the end of the period.",
            CU,
            [(ptd, f"{q.legend}: spent"),
             (budget, f"{q.legend}: budget"),
             (even_pace, f"{q.legend}: even pace"),
             (q.sel(PROJECTED), f"{q.legend}: projected at period end")],
            rate=False, width=16, legend_calcs=("lastNotNull",),
            overrides=[by_ref("B", DASHED, fixed_color("red")),
                       by_ref("C", DOTTED, fixed_color("text")),
                       by_ref("D", DASHED, fixed_color("orange"))]),
        Panel("piechart", "Spend by channel this period",
              "Where this period's Creative Units went: through API keys (scripts, "
              "pipelines, integrations) or through Scenario's web app (the rest of the cost).",
              CU,
              targets((q.sel(PTD_API_COST), f"{q.legend}: API keys"),
                      (web_app_ptd, f"{q.legend}: web app")),
              8, 9,
              options={"reduceOptions": _reduce(), "pieType": "donut",
                       "displayLabels": ["percent"],
                       "legend": {"showLegend": True, "displayMode": "table",
                                  "placement": "bottom", "values": ["value", "percent"]},
                       "tooltip": {"mode": "single", "sort": "none"}},
              defaults={"decimals": 0, "color": {"mode": "palette-classic"}}),

        Row("Spend over time"),
        timeseries(
            f"Spend rate by model (top {TOP_N})",
            f"Creative Units per hour of the {TOP_N} models that cost the most over the "
            "selected time range, stacked, plus all other models together: the top of the "
            "stack is the account's total spend rate. Model names come from "
            "scenario_model_info.",
            CU_PER_HOUR,
            [(top_spend, model_legend), (q.other_models(COST), f"other models · {q.legend}")],
            stacked=True, width=24, height=10),
        timeseries(
            f"Jobs by model (top {TOP_N})",
            f"Jobs per hour of the {TOP_N} models that ran the most jobs over the selected "
            "time range.",
            "suffix: jobs/h",
            [(q.with_model_names(q.top_models(per_hour(q.rate_sum(jobs, "model_id")),
                                          jobs)), model_legend)],
            stacked=True),
        timeseries(
            f"Discounts by model (top {TOP_N})",
            f"Creative Units per hour discounted on the {TOP_N} models with the largest "
            "discounts over the selected time range (a positive amount).",
            CU_PER_HOUR,
            [(q.with_model_names(q.top_models(per_hour(q.rate_sum(discounts, "model_id")),
                                          discounts)), model_legend)],
            stacked=True),
        timeseries(
            "Spend rate by channel",
            "Creative Units per hour through API keys and through the web app (total cost "
            "minus the API-key cost), stacked.",
            CU_PER_HOUR,
            [(per_hour(q.rate_sum(API_COST)), f"{q.legend}: API keys"),
             (per_hour(f"{q.rate_sum(COST)}\n- {on}\n"
                       f"{q.rate_sum(API_COST)}"),
              f"{q.legend}: web app")],
            stacked=True),
        table(
            "Models this period",
            "Every model's spend since the period began (recording rule "
            f"{PTD_MODEL_COST}) and its spend rate over the last hour "
            f"({RATE1H_MODEL}), biggest first. The footer adds up the columns.",
            CU,
            [(q.with_model_names(q.sel(PTD_MODEL_COST)), "Spent this period", CU),
             (per_hour(q.with_model_names(q.sel(RATE1H_MODEL))), "Last hour", CU_PER_HOUR)],
            hidden=(), renames={"model_name": "Model", "model_id": "Model id",
                                "account": "Account", q.deployment: q.deployment.title()},
            order=["Model", "Spent this period", "Last hour", "Account",
                   q.deployment.title(), "Model id"],
            width=12, height=9),

        Row("Users"),
        table(
            "Users this period",
            "Creative Units consumed and discounted per user (people and API keys) since "
            f"the period began (recording rules {PTD_USER} and {PTD_USER_DISCOUNT}), and "
            "the current rate. User names and e-mails are personal data: they appear only "
            "when the exporter runs with --metrics.user-identity; otherwise, the user id.",
            CU,
            [(q.with_user_names(q.sel(PTD_USER)), "Consumed this period", CU),
             (q.with_user_names(q.sel(PTD_USER_DISCOUNT)), "Discounted this period", CU),
             (per_hour(q.with_user_names(
                 q.rate_sum("scenario_user_consumption_creative_units_total", "user_id"))),
              "Current rate", CU_PER_HOUR)],
            hidden=(), renames={"user_name": "User", "user_id": "User id",
                                "is_api_key": "API key", "account": "Account",
                                q.deployment: q.deployment.title()},
            order=["User", "Consumed this period", "Discounted this period", "Current rate",
                   "API key", "Account", q.deployment.title(), "User id"],
            height=10),

        Row("Assets and usage"),
        timeseries(
            "Assets created by kind",
            "Assets created per hour, by kind (image, video, 3d, audio, ...), stacked.",
            "suffix: assets/h",
            [(per_hour(q.rate_sum("scenario_assets_created_total", "kind")),
              f"{{{{kind}}}} · {q.legend}")],
            stacked=True),
        timeseries(
            "NSFW-flagged assets by label",
            "Assets per hour that Scenario's NSFW detection flagged, by label. "
            "ScenarioNSFWAssetsFlagged (info) fires when new ones appear.",
            "suffix: assets/h",
            [(per_hour(q.rate_sum("scenario_nsfw_assets_total", "label")),
              f"{{{{label}}}} · {q.legend}")],
            stacked=True, bars=True),
        timeseries(
            "Usage by usage name",
            "Every usage counter of Scenario's usage API, per hour, by usage_name "
            "(images-generation, upscale, models-training, ...). Each is in its own unit, "
            "so they are not stacked.",
            "suffix: /h",
            [(per_hour(q.rate_sum("scenario_usage_total", "usage_name")),
              f"{{{{usage_name}}}} · {q.legend}")],
            width=24, height=10),
    ]
    new_period = {
        "name": "Period start", "enable": True, "hide": False, "iconColor": "blue",
        "datasource": DATASOURCE,
        "expr": (f"max by ({q.keys}) (changes({q.sel(PERIOD_START_METRIC)}[{RATE_WINDOW}]))"
                 " > 0"),
        "step": MIN_INTERVAL, "titleFormat": "New billing period",
        "textFormat": q.legend, "tagKeys": q.keys.replace(" ", ""), "useValueForTime": False,
    }
    return dashboard(
        q, "scenario-usage", "Scenario usage",
        "Creative Unit spend of Scenario accounts: this period against the budget, where "
        "it goes (models, channels, users), what it produces. From scenario-exporter; "
        "needs its recording rules.",
        items, extra_tags=["finops"], timezone="utc", annotations=[new_period])


# -- the exporter dashboard ------------------------------------------------------

def exporter_dashboard(q: Queries) -> dict[str, Any]:
    # A deployment refreshes if any of its replicas does: its data is served.
    up = q.latest("scenario_up")
    age = f"time() - {q.latest('scenario_data_as_of_timestamp_seconds')}"
    response = q.latest("scenario_exporter_upstream_response_bytes")
    up_mappings = [{"type": "value", "options": {
        "0": {"text": "Failing", "color": "red", "index": 0},
        "1": {"text": "OK", "color": "green", "index": 1}}}]
    age_steps = thresholds((None, "green"), (3600, "orange"), (7200, "red"))
    duration = "scenario_exporter_upstream_request_duration_seconds_bucket"

    def latency(quantile: float) -> tuple[str, str]:
        expr = (f"histogram_quantile({quantile}, "
                f"sum by ({q.by('le')}) (rate({q.sel(duration)}[{RATE_WINDOW}])))")
        return expr, f"p{int(quantile * 100)} · {q.legend}"

    # Series without an account label belong to the exporters serving the selected accounts.
    serving = f"and on ({q.deployment_and('job, instance')}) {q.sel('scenario_up')}"
    items: list[Panel | Row] = [
        Row("Health"),
        stat("Upstream refresh",
             "Whether the latest refresh of each account from Scenario's API succeeded "
             "on at least one replica (scenario_up): its data is then served. "
             "ScenarioRefreshFailing fires after 15 minutes of failures.",
             "none", up, q.legend, graph=False, mappings=up_mappings,
             steps=thresholds((None, "red"), (1, "green")), width=6),
        stat("Data age",
             "How old the data served for each account is: now minus the end of the "
             "upstream window it was computed from. Grows up to --cache.ttl between "
             "refreshes; ScenarioDataStale fires above 1 hour; past --cache.max-stale (2h by "
             "default) the business series are withdrawn.",
             "s", age, q.legend, decimals=None, steps=age_steps, width=6),
        gauge("Last response size",
              "Size of the last upstream response body, as a share of the API's 6 MB limit. "
              "The exporter splits the window in two when a response is too large.",
              f"100 * {response} / {RESPONSE_LIMIT_BYTES}", q.legend, width=6),
        stat("Exporter version",
             "Versions of the exporters serving the selected accounts, and of the Python "
             "running them (scenario_exporter_build_info); the value is how many run it.",
             "none",
             f"count by (version, python_version) "
             f"({q.sel('scenario_exporter_build_info', account=False)} {serving})",
             "{{version}} (Python {{python_version}})", graph=False, text_mode="name",
             steps=thresholds((None, "text")), width=6),

        Row("Upstream API"),
        timeseries(
            "Upstream requests by status code",
            "Requests per hour to Scenario's API, by HTTP status code (or timeout, "
            "connection_error, invalid_response). One per account and --cache.ttl when "
            "healthy; 429 is rate limiting, 401/403 bad credentials.",
            "suffix: req/h",
            [(per_hour(q.process_rate_sum("scenario_exporter_upstream_requests_total", "code")),
              f"{{{{code}}}} · {q.legend}")],
            stacked=True, bars=True),
        timeseries(
            "Upstream latency",
            "Percentiles of the duration of upstream requests "
            "(scenario_exporter_upstream_request_duration_seconds histogram).",
            "s", [latency(0.5), latency(0.9), latency(0.99)]),
        timeseries(
            "Upstream response size vs the 6 MB limit",
            "Size of the last upstream response body per account. Scenario's API gateway "
            "refuses responses above 6 MB (red line); the exporter then splits the window.",
            "decbytes", [(response, q.legend)], rate=False,
            steps=thresholds((None, "green"), (RESPONSE_LIMIT_BYTES * 0.8, "orange"),
                             (RESPONSE_LIMIT_BYTES, "red")),
            threshold_style="line+area"),
        timeseries(
            "Refresh failures by reason",
            "Failed refreshes per hour, by reason (auth, rate_limited, request_cap, "
            "server_error, timeout, too_large, ...). See the runbook for each reason.",
            "suffix: failures/h",
            [(per_hour(q.process_rate_sum("scenario_exporter_refresh_failures_total",
                                          "reason")), f"{{{{reason}}}} · {q.legend}")],
            stacked=True, bars=True, legend_calcs=("max", "lastNotNull")),

        Row("Exporter"),
        Panel("state-timeline", "Refresh status over time",
              "scenario_up per account over time: green while refreshes succeed, red while "
              "they fail.",
              "none", [target(up, q.legend)], 12, 6,
              options={"mergeValues": True, "showValue": "auto", "alignValue": "left",
                       "rowHeight": 0.9,
                       "legend": {"showLegend": False, "displayMode": "list",
                                  "placement": "bottom"},
                       "tooltip": {"mode": "single", "sort": "none"}},
              defaults={"color": {"mode": "thresholds"}, "mappings": up_mappings,
                        "thresholds": thresholds((None, "red"), (1, "green")),
                        "custom": {"fillOpacity": 80, "lineWidth": 0}}),
        timeseries(
            "Data age over time",
            "Age of the data served per account over time (see the stat above). A "
            "sawtooth up to --cache.ttl is normal.",
            "s", [(age, q.legend)], rate=False, steps=age_steps,
            threshold_style="dashed", height=6),
        timeseries(
            "Folded series",
            "Models and users beyond --limits.max-models / --limits.max-users, folded "
            "into one __other__ series per account (sums stay exact, detail is lost). "
            "Above 0: raise the limit if the cardinality is affordable.",
            "short",
            [(f"max by ({q.by('section')}) ({q.sel('scenario_exporter_folded_series')})",
              f"{{{{section}}}} · {q.legend}")],
            rate=False, width=8, height=8, legend_calcs=("max", "lastNotNull")),
        timeseries(
            "Scrape duration",
            "How long Prometheus takes to scrape /metrics (its own scrape_duration_seconds "
            "per target). Upstream calls never happen during a scrape after the first "
            "one, so this stays in milliseconds.",
            "s",
            [(f"{q.sel('scrape_duration_seconds', account=False)} {serving}",
              "{{instance}}")],
            rate=False, width=8, height=8),
        timeseries(
            "Upstream downward revisions",
            "Downward revisions per hour by Scenario within a period (a refund, an id no "
            "longer reported), each counted once; the exporter serves the revised sums. "
            "Rare; a steady rate means upstream changed how it counts.",
            "suffix: /h",
            [(per_hour(f"max by ({q.keys}) (rate("
                       f"{q.sel('scenario_exporter_upstream_decreases_total')}[{RATE_WINDOW}]))"),
              q.legend)],
            bars=True, width=8, height=8, legend_calcs=("max", "lastNotNull")),
    ]
    return dashboard(
        q, "scenario-exporter", "Scenario exporter",
        "Health of scenario-exporter: upstream refreshes, data freshness, Scenario API "
        "requests, latency, response size, failures, cardinality caps.",
        items, extra_tags=[], timezone="browser", annotations=[])


DASHBOARDS = {
    "scenario-usage.json": usage_dashboard,
    "scenario-exporter.json": exporter_dashboard,
}


def render(build: Any, queries: Queries) -> str:
    return json.dumps(build(queries), indent=2, ensure_ascii=False) + "\n"


def generated(queries: Queries, output: Path) -> Iterator[tuple[Path, str]]:
    for name, build in DASHBOARDS.items():
        yield output / name, render(build, queries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when a committed dashboard is not up to date")
    parser.add_argument("--deployment-label", default=Queries.deployment, metavar="LABEL",
                        help="the label that tells deployments apart, selected by a variable "
                             "of that name and kept in every query (default: %(default)s; "
                             "e.g. cluster)")
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR, metavar="DIR",
                        help="where to write the dashboards (default: dashboards/)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", args.deployment_label) or \
            args.deployment_label in ("account", "instance", "pod"):
        parser.error(f"--deployment-label: {args.deployment_label!r} is not a label name "
                     "that can tell deployments apart")
    stale = []
    for path, text in generated(Queries(args.deployment_label), args.output_dir):
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"not up to date: {', '.join(stale)}; run python3 scripts/gen_dashboards.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
