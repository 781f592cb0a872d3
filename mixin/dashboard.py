"""A Grafana dashboard around its panels: grid layout, template variables, links.

Every dashboard can be imported and provisioned as it is (Grafana UI, file
provisioning, the Grafana sidecar of kube-prometheus-stack, the Helm chart): a
datasource variable rather than ``__inputs``, a fixed uid, no numeric id.
"""

from __future__ import annotations

from typing import Any

from mixin.config import MixinConfig
from mixin.panel_queries import PanelQueries
from mixin.panels import DATASOURCE, Panel, Row

SCHEMA_VERSION = 39  # Grafana 11.0
GRID_COLUMNS = 24
TAGS = ["scenario", "scenario-exporter"]


def layout(items: list[Panel | Row], min_interval: str) -> list[dict[str, Any]]:
    """Place panels left to right on Grafana's 24-column grid; a Row starts a new line."""
    panels: list[dict[str, Any]] = []
    x = y = line_height = 0
    for panel_id, item in enumerate(items, start=1):
        if isinstance(item, Row):
            y += line_height
            panels.append({"id": panel_id, "type": "row", "title": item.title, "collapsed": False,
                           "gridPos": {"h": 1, "w": GRID_COLUMNS, "x": 0, "y": y},
                           "panels": []})
            x, y, line_height = 0, y + 1, 0
            continue
        if x + item.width > GRID_COLUMNS:
            x, y, line_height = 0, y + line_height, 0
        panels.append(item.render(panel_id, x, y, min_interval))
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


def dashboard(cfg: MixinConfig, q: PanelQueries, uid: str, title: str, description: str,
              items: list[Panel | Row], *, extra_tags: list[str], timezone: str,
              annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """The dashboard's JSON: its panels laid out, the datasource, deployment and account
    variables, a link to the other Scenario dashboards."""
    deployment = cfg.deployment_label
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
        "refresh": cfg.dashboard_refresh,
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": cfg.dashboard_time_from, "to": "now"},
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
            variable(deployment, deployment.title(),
                     f"label_values(scenario_up, {deployment})"),
            variable("account", "Account",
                     f"label_values({q.sel('scenario_up', account=False)}, account)"),
        ]},
        "panels": layout(items, cfg.min_interval),
    }
