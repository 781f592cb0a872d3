"""Grafana panels as plain dictionaries: queries, thresholds, and the panel kinds the
dashboards use (stat, gauge, time series, table).

Hand-written dictionaries rather than a Grafana SDK: the output is reviewed as
JSON in every change, and only the developers run this code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

CU = "suffix: CU"
CU_PER_HOUR = "suffix: CU/h"


def ref_id(index: int) -> str:
    """Grafana's query letters: A, B, C..."""
    return chr(ord("A") + index)


def target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False,
           table: bool = False) -> dict[str, Any]:
    """One query of a panel."""
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
    return [target(expr, legend, ref_id(i)) for i, (expr, legend) in enumerate(specs)]


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    """Absolute thresholds from ``(from value, color)`` steps, the first from None."""
    return {"mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in steps]}


GREEN_ONLY = thresholds((None, "green"))


@dataclass
class Panel:
    """A Grafana panel before layout: everything but its id and position.

    *rate*: its queries rate counters, so the dashboard gives it a minimum
    interval (see MixinConfig.min_interval).
    """

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
    rate: bool = False

    def render(self, panel_id: int, x: int, y: int, min_interval: str) -> dict[str, Any]:
        """The panel's JSON at grid position *x*, *y*."""
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
            **({"interval": min_interval} if self.rate else {}),
            **self.extra,
            "targets": self.targets,
        }


@dataclass
class Row:
    """A row header: it starts a new line of panels."""

    title: str


def reduce_options(calc: str = "lastNotNull") -> dict[str, Any]:
    """How a single-value panel reduces a series to one number."""
    return {"calcs": [calc], "fields": "", "values": False}


def stat(title: str, description: str, unit: str, expr: str, legend: str, *,
         steps: dict[str, Any] = GREEN_ONLY, graph: bool = True, decimals: int | None = 0,
         mappings: list[dict[str, Any]] | None = None, text_mode: str = "auto",
         width: int = 3, height: int = 4) -> Panel:
    """A single figure per series, with a sparkline unless *graph* is False."""
    defaults: dict[str, Any] = {"color": {"mode": "thresholds"}, "thresholds": steps,
                                "mappings": mappings or []}
    if decimals is not None:
        defaults["decimals"] = decimals
    return Panel("stat", title, description, unit, [target(expr, legend)], width, height,
                 options={"reduceOptions": reduce_options(), "orientation": "auto",
                          "textMode": text_mode, "colorMode": "value",
                          "graphMode": "area" if graph else "none", "justifyMode": "auto",
                          "wideLayout": True, "showPercentChange": False},
                 defaults=defaults)


def gauge(title: str, description: str, expr: str, legend: str, *,
          width: int = 3, height: int = 4) -> Panel:
    """A percentage gauge, orange from 80%, red from 100%."""
    return Panel("gauge", title, description, "percent", [target(expr, legend)], width, height,
                 options={"reduceOptions": reduce_options(), "orientation": "auto",
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
    """A graph of ``(expr, legend)`` queries; *rate*: they rate counters."""
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
        defaults=defaults, overrides=overrides or [], rate=rate)


def bar_chart(title: str, description: str, unit: str, specs: list[tuple[str, str]], *,
              step: str, time_from: str, time_format: str, width: int = 24,
              height: int = 9) -> Panel:
    """Grouped bars of time series that have values at a few moments only: one group of
    bars per moment (labelled in *time_format*), one bar per series. Its queries run
    with a minimum interval of *step*, over the last *time_from* whatever the
    dashboard's range (Grafana's relative time override, while that range ends now).

    The bar chart joins its series on time and draws only the moments that have a
    value; a time series panel would draw a slot for every step (1 day wide)."""
    return Panel(
        "barchart", title, description, unit, targets(*specs), width, height,
        options={"orientation": "vertical", "stacking": "none", "showValue": "auto",
                 "groupWidth": 0.7, "barWidth": 0.97, "barRadius": 0,
                 "xTickLabelRotation": 0, "xTickLabelSpacing": 0, "fullHighlight": False,
                 "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom",
                            "calcs": []},
                 "tooltip": {"mode": "multi", "sort": "desc"}},
        defaults={"decimals": 0, "min": 0, "color": {"mode": "palette-classic"},
                  "thresholds": GREEN_ONLY,
                  "custom": {"lineWidth": 1, "fillOpacity": 80, "gradientMode": "none",
                             "axisPlacement": "auto", "axisLabel": ""}},
        overrides=[{"matcher": {"id": "byType", "options": "time"},
                    "properties": [{"id": "unit", "value": f"time:{time_format}"}]}],
        extra={"interval": step, "timeFrom": time_from})


def table(title: str, description: str, unit: str, columns: list[tuple[str, str, str]],
          renames: dict[str, str], order: list[str], *, hidden: tuple[str, ...] = (),
          width: int = 24, height: int = 10) -> Panel:
    """An instant table: one query per value column ``(expr, column name, unit)``,
    merged on their labels."""
    column_targets = [target(expr, "", ref_id(i), instant=True, table=True)
                      for i, (expr, _, _) in enumerate(columns)]
    value_names = {f"Value #{ref_id(i)}": name for i, (_, name, _) in enumerate(columns)}
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
    """An override of the series of query *ref*."""
    return {"matcher": {"id": "byFrameRefID", "options": ref},
            "properties": [{"id": key, "value": value} for key, value in properties]}


DASHED = ("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})
DOTTED = ("custom.lineStyle", {"fill": "dot", "dash": [0, 10]})


def fixed_color(color: str) -> tuple[str, Any]:
    """A fixed colour, for an override."""
    return ("color", {"mode": "fixed", "fixedColor": color})
