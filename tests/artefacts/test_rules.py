"""The Prometheus rules: valid for promtool, unit-tested, and following the mixin conventions.

``promtool check rules`` and ``promtool test rules`` run on the real files, with
the promtool of Prometheus 2 and of Prometheus 3 (the test id names the
version); the convention checks read the same YAML. Anything here that fails
names the rule.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.prometheus import BUILDS, Build, require_build
from testkit.repo import REPO_ROOT

RULES_DIR = REPO_ROOT / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yml"))
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
RUNBOOK_URL = ("https://github.com/scenario-exporter/scenario-exporter/blob/main/"
               "docs/runbook.md#")
SEVERITIES = {"critical", "warning", "info"}
# level:metric:operations (https://prometheus.io/docs/practices/rules/)
RECORD_NAME = re.compile(r"^[a-z][a-z_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")
RECORDED_REFERENCE = re.compile(r"\b[a-z][a-z_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*\b")


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for group in _load(path)["groups"]
            for rule in group["rules"]]


ALERTS = [rule for rule in _rules() if "alert" in rule]
RECORDS = [rule for rule in _rules() if "record" in rule]


def test_the_rule_files_are_there() -> None:
    assert [p.name for p in RULE_FILES] == ["scenario-alerts.rules.yml",
                                            "scenario-recording.rules.yml"]
    assert len(ALERTS) >= 8 and len(RECORDS) >= 5
    assert TEST_FILES


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path, build: Build | int) -> None:
    result = subprocess.run([require_build(build).promtool, "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# Each file replays a month of samples: about 30 s of CPU together, so they run
# with the long suites (``promtool check rules`` above stays in the quick run).
# Every expectation holds exactly on both majors: how each is derived from what
# the input series spent is written beside it in the test file.
@pytest.mark.slow
@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests(path: Path, build: Build | int) -> None:
    result = subprocess.run([require_build(build).promtool, "test", "rules", str(path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: r["alert"])
def test_alert_follows_the_mixin_conventions(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"Scenario[A-Z][A-Za-z]+", name), "CamelCase with the Scenario prefix"
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    summary = annotations["summary"]
    assert "{{" not in summary and "$" not in summary, "the summary is not templated"
    assert re.fullmatch(r"[A-Z][^.!?]*\.", summary), f"one sentence: {summary!r}"
    assert "{{" in annotations["description"], "the description is templated"
    assert annotations["runbook_url"] == RUNBOOK_URL + name.lower()


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in ALERTS]
    assert len(names) == len(set(names))


def test_every_alert_has_a_runbook_section_and_nothing_else_does() -> None:
    headings = re.findall(r"^## (\S+)$", RUNBOOK.read_text(encoding="utf-8"), re.M)
    assert headings == [rule["alert"] for rule in ALERTS], "same alerts, same order"


@pytest.mark.parametrize("rule", RECORDS, ids=lambda r: r["record"])
def test_recording_rule_names_follow_level_metric_operations(rule: dict[str, Any]) -> None:
    name = rule["record"]
    assert RECORD_NAME.fullmatch(name), name
    # A recorded series is never a raw counter: no _total, so that nobody
    # applies rate() to a period-to-date sum or reads a rate as a counter.
    assert not name.endswith("_total")


def test_every_recorded_series_that_a_rule_uses_is_recorded() -> None:
    recorded = {rule["record"] for rule in RECORDS}
    for rule in _rules():
        for reference in RECORDED_REFERENCE.findall(rule["expr"]):
            assert reference in recorded, f"{rule.get('alert') or rule['record']}: {reference}"


def _unit_tests() -> list[dict[str, Any]]:
    return [test for path in TEST_FILES for test in _load(path)["tests"]]


def test_unit_tests_load_every_rule_file() -> None:
    loaded = {(path.parent / name).resolve() for path in TEST_FILES
              for name in _load(path)["rule_files"]}
    assert loaded == set(RULE_FILES)


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_unit_tests_record_before_they_alert(path: Path) -> None:
    """With several groups and no group_eval_order, promtool evaluates them in a random
    order, and an alert may miss a series recorded at the same instant: a flaky test."""
    document = _load(path)
    groups = [group["name"] for name in document["rule_files"]
              for group in _load(path.parent / name)["groups"]]
    if len(groups) > 1:
        assert document.get("group_eval_order") == sorted(groups, key=lambda g: "alerts" in g)


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: r["alert"])
def test_every_alert_is_tested_firing_and_not_firing(rule: dict[str, Any]) -> None:
    cases = [case for test in _unit_tests() for case in test.get("alert_rule_test", [])
             if case["alertname"] == rule["alert"]]
    assert any(case.get("exp_alerts") for case in cases), "no case where it fires"
    assert any(not case.get("exp_alerts") for case in cases), "no case where it must not fire"
    # The firing cases check every annotation, the templated description included.
    for case in cases:
        for alert in case.get("exp_alerts") or []:
            assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}


_DURATION_PART = re.compile(r"(\d+)(ms|[smhdwy])")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as ``744h15m``."""
    parts = _DURATION_PART.findall(text)
    assert "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(int(n) * _SECONDS[u] for n, u in parts)


_SERIES_RUN = re.compile(r"^(-?[0-9.]+)(?:([+-][0-9.]+))?x([0-9]+)$")


def expand_values(notation: str) -> list[float | None]:
    """promtool's series notation: ``1+2x3 _x2 stale 7`` -> 1 3 5 7 None None None 7."""
    values: list[float | None] = []
    for token in notation.split():
        if token in ("_", "stale"):
            values.append(None)
        elif token.startswith("_x"):
            values.extend([None] * int(token[2:]))
        elif match := _SERIES_RUN.match(token):
            start, step, count = float(match[1]), float(match[2] or 0), int(match[3])
            values.extend(start + step * i for i in range(count + 1))
        else:
            values.append(float(token))
    return values


def test_expand_values() -> None:
    assert expand_values("1+2x3 _x2 stale 7 4x1") == [1, 3, 5, 7, None, None, None, 7, 4, 4]


def _first_reset(test: dict[str, Any]) -> float | None:
    """When the first counter of the test's input falls back (a period rollover), in seconds."""
    interval = parse_duration(test.get("interval", "1m"))
    resets = []
    for series in test["input_series"]:
        if "_total{" not in series["series"]:
            continue
        previous = None
        for index, value in enumerate(expand_values(series["values"])):
            if value is not None and previous is not None and value < previous:
                resets.append(index * interval)
                break
            previous = value if value is not None else previous
    return min(resets, default=None)


PERIOD_ALERTS = ("ScenarioBudgetExhausted", "ScenarioBudgetForecastExceeded",
                 "ScenarioSpendSpike", "ScenarioNSFWAssetsFlagged")


@pytest.mark.parametrize("alertname", PERIOD_ALERTS)
def test_period_alert_is_tested_across_a_period_rollover(alertname: str) -> None:
    """Period counters reset when a period starts: some test must see this alert stay silent
    after a counter of its input falls back."""
    for test in _unit_tests():
        reset = _first_reset(test)
        if reset is None:
            continue
        for case in test.get("alert_rule_test", []):
            if (case["alertname"] == alertname and not case.get("exp_alerts")
                    and parse_duration(case["eval_time"]) > reset):
                return
    pytest.fail(f"no test where {alertname} stays silent after a counter reset")


@pytest.mark.parametrize("rule", RECORDS, ids=lambda r: r["record"])
def test_every_recording_rule_is_unit_tested(rule: dict[str, Any]) -> None:
    exprs = [case["expr"] for test in _unit_tests() for case in test.get("promql_expr_test", [])]
    assert any(re.search(rf"\b{re.escape(rule['record'])}\b", expr) for expr in exprs)


def test_the_documented_prometheusrule_command_wraps_every_rule(tmp_path: Path) -> None:
    """docs/dashboards.md tells Prometheus Operator users how to make a PrometheusRule."""
    doc = (REPO_ROOT / "docs" / "dashboards.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```sh\n(.*?)```", doc, re.S) if "PrometheusRule" in b)
    command = block.split("kubectl apply")[0].replace(
        "scenario-prometheusrule.yaml", str(tmp_path / "rule.yaml"))
    subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=REPO_ROOT, check=True,
                   timeout=30)
    resource = _load(tmp_path / "rule.yaml")
    assert resource["kind"] == "PrometheusRule"
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    groups = [group for path in RULE_FILES for group in _load(path)["groups"]]
    assert resource["spec"]["groups"] == groups


REPLICA_LABELS = ("instance", "pod")


def test_rules_keep_every_label_but_the_replicas() -> None:
    """`without`, never `by`: `job` and any other label (an external `cluster`) survive
    every aggregation, so that two deployments never add up."""
    for rule in _rules():
        assert not re.search(r"\bby\s*\(", rule["expr"]), rule.get("alert") or rule["record"]


def _series_labels(selector: str) -> tuple[str, frozenset[tuple[str, str]]]:
    name, _, rest = selector.partition("{")
    pairs = re.findall(r'(\w+)="([^"]*)"', rest)
    return name, frozenset(pairs)


def _has_two_replicas(test: dict[str, Any]) -> bool:
    """Two input series that differ only by the labels that say which replica."""
    seen: dict[tuple[str, frozenset[tuple[str, str]]], int] = {}
    for series in test["input_series"]:
        name, labels = _series_labels(series["series"])
        key = (name, frozenset((k, v) for k, v in labels if k not in REPLICA_LABELS))
        seen[key] = seen.get(key, 0) + 1
    return any(count >= 2 for count in seen.values())


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: r["alert"])
def test_every_alert_is_tested_with_two_replicas_firing_once(rule: dict[str, Any]) -> None:
    """A second replica raises no second alert: some test fires this alert from two
    replicas' series, and expects each alert once, without a replica label."""
    for test in _unit_tests():
        cases = [case for case in test.get("alert_rule_test", [])
                 if case["alertname"] == rule["alert"] and case.get("exp_alerts")]
        if cases and _has_two_replicas(test):
            for case in cases:
                for alert in case["exp_alerts"]:
                    assert not set(alert["exp_labels"]) & set(REPLICA_LABELS), case
            return
    pytest.fail(f"no test fires {rule['alert']} from two replicas")
