"""The Prometheus Operator objects: the ServiceMonitor (its endpoint, an interval left to
Prometheus, the scrape credentials and TLS config it needs, refused with a message when
missing), the PrometheusRule (the rules/ directory, extra labels, disabled alerts, ``promtool
check rules``) and the Grafana dashboards' ConfigMaps (the JSON unchanged, the label
configurable), all from the chart's copies of rules/ and dashboards/.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.helm import (
    NAMESPACE,
    RELEASE,
    RenderError,
    ci_values,
    load_values,
    of_kind,
    one,
    render,
)
from testkit.repo import REPO_ROOT
from testkit.tools import require_tool


def test_service_monitor() -> None:
    values = load_values(ci_values("everything-on"))
    objects = render(ci_values("everything-on"))
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["selector"]["matchLabels"] == (
        one(objects, "Service")["spec"]["selector"])
    (endpoint,) = monitor["spec"]["endpoints"]
    port_names = [p["name"] for p in one(objects, "Service")["spec"]["ports"]]
    assert endpoint["port"] in port_names
    assert endpoint["path"] == "/metrics"
    for key in ("interval", "scrapeTimeout", "relabelings", "metricRelabelings", "basicAuth"):
        assert endpoint[key] == values["serviceMonitor"][key], key


def test_empty_interval_leaves_the_scrape_to_prometheus() -> None:
    (endpoint,) = one(render(ci_values("operator-options")), "ServiceMonitor")["spec"][
        "endpoints"]
    assert "interval" not in endpoint and "scrapeTimeout" not in endpoint
    (endpoint,) = one(render(sets=["demo=true", "serviceMonitor.enabled=true"]),
                      "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("60s", "30s")


def test_basic_auth_without_scrape_credentials_is_refused() -> None:
    sets = ["demo=true", "serviceMonitor.enabled=true",
            "web.config.basic_auth_users.prometheus=$2b$10$abcdefghijklmnopqrstuv"]
    with pytest.raises(RenderError) as refused:
        render(sets=sets)
    first_line = str(refused.value).splitlines()[0]
    assert "serviceMonitor.basicAuth: web.config has basic_auth_users" in first_line
    assert first_line.endswith("a Secret in the ServiceMonitor's namespace"), "one line"
    ok = render(sets=[*sets, "serviceMonitor.basicAuth.username.name=scrape",
                      "serviceMonitor.basicAuth.username.key=username",
                      "serviceMonitor.basicAuth.password.name=scrape",
                      "serviceMonitor.basicAuth.password.key=password"])
    assert one(ok, "ServiceMonitor")["spec"]["endpoints"][0]["basicAuth"]


def test_cross_namespace_service_monitor_with_tls_needs_its_own_tls_config() -> None:
    sets = ["demo=true", "serviceMonitor.enabled=true", "serviceMonitor.namespace=prometheus",
            "web.tls.enabled=true", "web.tls.secretName=exporter-tls"]
    with pytest.raises(RenderError) as refused:
        render(sets=sets)
    message = str(refused.value)
    assert "serviceMonitor.tlsConfig: the ServiceMonitor in namespace prometheus cannot read " \
           f"Secrets of namespace {NAMESPACE}; copy ca.crt of Secret exporter-tls into a " \
           "Secret in prometheus" in message
    assert f"serverName: {RELEASE}-scenario-exporter.{NAMESPACE}.svc" in message
    ok = render(sets=[*sets, "serviceMonitor.tlsConfig.ca.secret.name=exporter-ca",
                      "serviceMonitor.tlsConfig.ca.secret.key=ca.crt"])
    monitor = one(ok, "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["tlsConfig"]["ca"]["secret"]["name"] == "exporter-ca"
    # In the release namespace the chart's own tlsConfig is readable: no refusal.
    render(sets=sets[:2] + sets[3:])


def _source_rule_files() -> list[Path]:
    return sorted((REPO_ROOT / "rules").glob("*.yml"))


def _source_dashboards() -> list[Path]:
    return sorted((REPO_ROOT / "dashboards").glob("*.json"))


def test_chart_files_are_copies_of_rules_and_dashboards() -> None:
    """Helm only reads files inside the chart: `python -m mixin` writes copies there."""
    for originals, kind in ((_source_rule_files(), "rules"), (_source_dashboards(), "dashboards")):
        copies = sorted((REPO_ROOT / "helm" / "scenario-exporter" / "files" / kind).glob(
            "*" + originals[0].suffix))
        assert {p.name: p.read_bytes() for p in copies} == \
            {p.name: p.read_bytes() for p in originals}, f"run: python -m mixin ({kind})"


def test_project_has_rules_and_dashboards_to_ship() -> None:
    assert _source_rule_files(), "rules/ has no *.yml file"
    assert _source_dashboards(), "dashboards/ has no *.json file"


def _expected_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in _source_rule_files():
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def test_prometheus_rule_equals_the_rules_directory() -> None:
    if not _source_rule_files():
        with pytest.raises(RenderError, match="carries no rules"):
            render(sets=["prometheusRule.enabled=true"])
        return
    rule = one(render(sets=["prometheusRule.enabled=true"]), "PrometheusRule")
    assert rule["spec"]["groups"] == _expected_groups()
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts, "the PrometheusRule has no alert"


def test_prometheus_rule_extra_labels_and_disabled_alerts() -> None:
    groups = _expected_groups()
    alerts = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
    assert alerts, "rules/ has no alert"
    rule = one(render(sets=["prometheusRule.enabled=true",
                            "prometheusRule.additionalAlertLabels.team=finops",
                            f"prometheusRule.disabledAlerts[0]={alerts[0]}"]), "PrometheusRule")
    rendered = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert alerts[0] not in [r.get("alert") for r in rendered]
    assert len([r for r in rendered if "alert" in r]) == len(alerts) - 1
    for item in rendered:
        if "alert" in item:
            assert item["labels"]["team"] == "finops"
        else:
            assert "team" not in item.get("labels", {}), "recording rules keep their labels"


def test_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    objects = render(ci_values("everything-on"))
    rule_file = tmp_path / "rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": one(objects, "PrometheusRule")["spec"]
                                         ["groups"]}))
    result = subprocess.run([promtool, "check", "rules", str(rule_file)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_config_maps_carry_the_json_unchanged() -> None:
    sources = _source_dashboards()
    if not sources:
        with pytest.raises(RenderError, match="carries no dashboards"):
            render(sets=["dashboards.enabled=true"])
        return
    maps = of_kind(render(sets=["dashboards.enabled=true"]), "ConfigMap")
    data: dict[str, str] = {}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert len(config_map["data"]) == 1, "one dashboard per ConfigMap"
        assert len(json.dumps(config_map)) < 1024 * 1024, "ConfigMaps are limited to 1 MiB"
        data.update(config_map["data"])
    assert data == {p.name: p.read_bytes().decode("utf-8") for p in sources}
    for text in data.values():
        json.loads(text)


def test_dashboards_label_is_configurable() -> None:
    assert _source_dashboards(), "dashboards/ has no *.json file"
    maps = of_kind(render(sets=["dashboards.enabled=true", "dashboards.label=grafana",
                                "dashboards.labelValue=scenario",
                                "dashboards.namespace=grafana"]), "ConfigMap")
    assert maps
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana"] == "scenario"
        assert "grafana_dashboard" not in config_map["metadata"]["labels"]
        assert config_map["metadata"]["namespace"] == "grafana"
