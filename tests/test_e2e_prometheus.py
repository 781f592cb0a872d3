"""End to end: a real Prometheus scrapes a real ``scenario-exporter --demo`` and loads the rules.

Every query of every panel of every dashboard, template variables substituted,
is evaluated through Prometheus' HTTP API and must return data; every rule
must evaluate with health ``ok``; no alert about the exporter's own health may
be pending on a healthy exporter. Both processes are stopped at the end,
whatever happens.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import REPO_ROOT, require_tool, wait_for

pytestmark = pytest.mark.e2e

DASHBOARDS = sorted((REPO_ROOT / "dashboards").glob("*.json"))
RULE_FILES = sorted((REPO_ROOT / "rules").glob("*.yml"))
START_TIMEOUT = 30.0
# Enough for a dozen refreshes (--cache.ttl 5s) in every rate window below.
DATA_TIMEOUT = 90.0
# Grafana computes these from the dashboard's range and the panel's width;
# here: 60 one-second scrapes per rate window, the whole run for $__range.
SUBSTITUTIONS = {"$__rate_interval": "1m", "$__range": "10m", "$datasource": "prometheus"}
# Alerts that must stay silent while the exporter and its upstream are healthy,
# and (the spike) while Prometheus is too new to know what is usual.
SILENT_ALERTS = {"ScenarioExporterDown", "ScenarioRefreshFailing", "ScenarioDataStale",
                 "ScenarioUpstreamRateLimited", "ScenarioSpendSpike"}



def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return f"--- last lines of {self.name}'s output:\n" + "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def start(name: str, argv: list[str], tmp: Path, **kwargs: Any) -> Process:
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, **kwargs)
    return Process(name, popen, log)


def get_ok(url: str, params: dict[str, str] | None = None) -> httpx.Response | None:
    try:
        response = httpx.get(url, params=params, timeout=5, trust_env=False)
    except httpx.TransportError:
        return None
    return response if response.status_code == 200 else None


@dataclass
class Stack:
    exporter: Process
    prometheus: Process
    url: str  # Prometheus

    def logs(self) -> str:
        return self.exporter.tail() + "\n" + self.prometheus.tail()

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10,
                             trust_env=False)
        body = response.json()
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_bin = require_tool("prometheus")
    tmp = tmp_path_factory.mktemp("e2e-prometheus")
    exporter_address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    exporter = start("exporter", [sys.executable, "-m", "exporter", "--demo",
                                  "--web.listen-address", exporter_address,
                                  "--cache.ttl", "5s", "--log.level", "info"],
                     tmp, cwd=REPO_ROOT, env=env)
    processes = [exporter]
    try:
        wait_for(lambda: exporter.popen.poll() is not None
                 or get_ok(f"http://{exporter_address}/-/ready"),
                 START_TIMEOUT, "the exporter to be ready", exporter.tail, interval=0.2)
        assert exporter.popen.poll() is None, exporter.tail()

        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in RULE_FILES],
            "scrape_configs": [{"job_name": "scenario-exporter",
                                "static_configs": [{"targets": [exporter_address]}]}],
        }
        config_file = tmp / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        prometheus_address = f"127.0.0.1:{free_port()}"
        prometheus = start("prometheus", [prometheus_bin, f"--config.file={config_file}",
                                          f"--storage.tsdb.path={tmp / 'data'}",
                                          f"--web.listen-address={prometheus_address}",
                                          "--log.level=warn"], tmp)
        processes.append(prometheus)
        url = f"http://{prometheus_address}"
        wait_for(lambda: prometheus.popen.poll() is not None or get_ok(f"{url}/-/ready"),
                 START_TIMEOUT, "Prometheus to be ready", prometheus.tail, interval=0.2)
        assert prometheus.popen.poll() is None, prometheus.tail()
        yield Stack(exporter, prometheus, url)
    finally:
        for process in reversed(processes):
            process.stop()


def _rules(stack: Stack) -> list[dict[str, Any]]:
    return [rule for group in stack.api("rules")["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def warmed_up(stack: Stack) -> Stack:
    """Wait until rate windows hold several refreshes and every rule has been evaluated
    with data: recording rules produce series, the last of them (the projection)
    depending on all the others."""

    def ready() -> bool:
        refreshes = stack.query(
            'increase(scenario_exporter_upstream_requests_total{code="200"}[1m]) >= 3')
        projection = stack.query(
            "account:scenario_model_cost_creative_units:projected_at_period_end")
        rules = _rules(stack)
        evaluated = bool(rules) and all(rule["health"] != "unknown" for rule in rules)
        return bool(refreshes) and bool(projection) and evaluated

    wait_for(ready, DATA_TIMEOUT, "refreshes in the rate windows and evaluated rules",
             stack.logs, interval=0.2)
    return stack


def substitute(expr: str, accounts: list[str]) -> str:
    expr = expr.replace("$account", "(" + "|".join(accounts) + ")")
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr.replace('"$1"', ""), f"unsubstituted variable in {expr}"
    return expr


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard}:{self.panel}:{self.ref}"


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def panel_queries() -> list[PanelQuery]:
    queries = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                queries.append(PanelQuery(path.stem, panel["title"], target["refId"],
                                          target["expr"]))
    return queries


PANEL_QUERIES = panel_queries()


@pytest.fixture(scope="module")
def accounts(warmed_up: Stack) -> list[str]:
    """The values of the dashboards' account variable: label_values(scenario_up, account)."""
    values: list[str] = warmed_up.api("label/account/values", **{"match[]": "scenario_up"})
    assert values == ["demo"]
    return values


def test_every_dashboard_has_queries() -> None:
    assert {q.dashboard for q in PANEL_QUERIES} == {p.stem for p in DASHBOARDS}
    assert len(PANEL_QUERIES) >= 40


@pytest.mark.parametrize("query", PANEL_QUERIES, ids=str)
def test_panel_query_returns_data(warmed_up: Stack, accounts: list[str],
                                  query: PanelQuery) -> None:
    result = warmed_up.query(substitute(query.expr, accounts))
    assert result, f"{query}: no data\n{query.expr}"
    values = [float(sample["value"][1]) for sample in result]
    assert any(math.isfinite(v) for v in values), f"{query}: only NaN/Inf: {result}"
    for sample in result:
        assert sample["metric"].get("account") in accounts or "account" not in sample["metric"]


def test_annotation_queries_are_valid(warmed_up: Stack, accounts: list[str]) -> None:
    """Annotations mark rare events (a new period): they may be empty, never invalid."""
    count = 0
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for annotation in dashboard["annotations"]["list"]:
            if "expr" in annotation:
                warmed_up.query(substitute(annotation["expr"], accounts))
                count += 1
    assert count >= 1


def test_every_rule_evaluates_with_health_ok(warmed_up: Stack) -> None:
    groups = warmed_up.api("rules")["groups"]
    files = {Path(group["file"]).resolve() for group in groups}
    assert files == {path.resolve() for path in RULE_FILES}
    expected = {rule.get("record") or rule.get("alert")
                for path in RULE_FILES
                for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
                for rule in group["rules"]}
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert loaded == expected
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{group['name']}/{rule['name']}: {rule}"
            assert not rule.get("lastError"), f"{rule['name']}: {rule['lastError']}"


def test_recording_rules_produce_series_for_the_demo_account(warmed_up: Stack) -> None:
    for rule in _rules(warmed_up):
        if rule["type"] == "recording":
            result = warmed_up.query(rule["name"])
            assert {sample["metric"]["account"] for sample in result} == {"demo"}, rule["name"]


def test_no_false_alert_from_a_healthy_exporter_and_a_new_prometheus(warmed_up: Stack) -> None:
    alerts = warmed_up.api("alerts")["alerts"]
    noisy = [a for a in alerts if a["labels"]["alertname"] in SILENT_ALERTS]
    assert noisy == []
    # Assets flagged before Prometheus started are not news: only a label whose
    # counter grew while Prometheus watched may alert.
    for alert in alerts:
        if alert["labels"]["alertname"] == "ScenarioNSFWAssetsFlagged":
            grew = warmed_up.query(f'increase(scenario_nsfw_assets_total{{label="'
                                   f'{alert["labels"]["label"]}"}}[10m]) > 0')
            assert grew, alert
