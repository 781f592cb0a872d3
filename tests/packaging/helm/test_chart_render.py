"""The chart renders, lints and validates: ``helm lint --strict`` and ``helm template`` for
the defaults and each ``ci/*-values.yaml``, every object checked against Kubernetes' own
schemas (kubernetes-validate, offline) for the oldest Kubernetes the chart supports and the
newest the package knows, and the Prometheus Operator kinds against a hand-written subset
of their CRD schemas (itself checked to catch mistakes). Also what every object carries
(the recommended labels, the namespace) and what the defaults render: the workload only.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from testkit.helm import (
    CASES,
    CHART,
    CI_VALUES,
    NAMESPACE,
    RELEASE,
    Manifest,
    case_id,
    chart_yaml,
    ci_values,
    container,
    helm,
    one,
    render,
)


def _kube_versions() -> list[str]:
    chart = chart_yaml()
    oldest = re.search(r">=\s*v?(\d+\.\d+)", chart["kubeVersion"])
    assert oldest, f"Chart.yaml kubeVersion {chart['kubeVersion']!r} has no lower bound"
    return [oldest.group(1), ".".join(kubernetes_validate.latest_version().split(".")[:2])]


KUBE_VERSIONS = _kube_versions()


@pytest.mark.parametrize("values", CASES, ids=case_id)
def test_helm_lint_strict(values: Path | None) -> None:
    command = [helm(), "lint", "--strict", str(CHART)]
    if values:
        command += ["--values", str(values)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "[WARNING]" not in output and "[ERROR]" not in output, output


def test_ci_values_cover_the_required_cases() -> None:
    names = {p.name for p in CI_VALUES}
    for required in ("minimal", "existing-secret", "multi-account", "everything-on"):
        assert f"{required}-values.yaml" in names


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", CASES, ids=case_id)
def test_rendered_objects_are_valid(values: Path | None, kube_version: str) -> None:
    objects = render(values)
    assert objects, "nothing rendered"
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            check_operator_object(obj)
            continue
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} is invalid for Kubernetes {kube_version}: {exc.message} "
                        f"at {'/'.join(str(p) for p in exc.absolute_path)}")
        assert obj["metadata"]["namespace"] == NAMESPACE, where


@pytest.mark.parametrize("values", CASES, ids=case_id)
def test_every_object_has_the_recommended_labels(values: Path | None) -> None:
    objects = render(values)
    for obj in objects:
        labels = obj["metadata"]["labels"]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                    "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                    "helm.sh/chart"):
            assert key in labels, f"{obj['kind']} lacks {key}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
    deployment = one(objects, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert one(objects, "Service")["spec"]["selector"] == selector


def test_defaults_create_only_the_workload() -> None:
    kinds = sorted(o["kind"] for o in render())
    assert kinds == ["Deployment", "Service", "ServiceAccount"]


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = {o["kind"] for o in render()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "ConfigMap"}


def test_no_default_resources() -> None:
    """Resources are left to the user (documented in values.yaml)."""
    assert "resources" not in container(render())


# Hand-written subsets of the Prometheus Operator's CRD schemas
# (monitoring.coreos.com/v1): every field the chart can write, with its type.
_DURATION = {"type": "string",
             "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                        r"(([0-9]+)s)?(([0-9]+)ms)?)$"}


_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


_KEY_SELECTOR = {"type": "object", "required": ["key"], "additionalProperties": False,
                 "properties": {"key": {"type": "string"}, "name": {"type": "string"},
                                "optional": {"type": "boolean"}}}


_SECRET_OR_CONFIGMAP = {"type": "object", "additionalProperties": False,
                        "properties": {"secret": _KEY_SELECTOR, "configMap": _KEY_SELECTOR}}


_RELABEL = {"type": "object", "additionalProperties": False, "properties": {
    "action": {"enum": [a for b in ("replace", "keep", "drop", "hashmod", "labelmap",
                                    "labeldrop", "labelkeep", "lowercase", "uppercase",
                                    "keepequal", "dropequal")
                        for a in (b, {"hashmod": "HashMod", "labelmap": "LabelMap",
                                      "labeldrop": "LabelDrop", "labelkeep": "LabelKeep",
                                      "keepequal": "KeepEqual",
                                      "dropequal": "DropEqual"}.get(b, b.capitalize()))]},
    "modulus": {"type": "integer"}, "regex": {"type": "string"},
    "replacement": {"type": "string"}, "separator": {"type": "string"},
    "sourceLabels": {"type": "array", "items": {"type": "string"}},
    "targetLabel": {"type": "string"}}}


_METADATA = {"type": "object", "required": ["name", "namespace"], "properties": {
    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
    "namespace": {"type": "string"}, "labels": _STRING_MAP, "annotations": _STRING_MAP}}


SERVICE_MONITOR_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {"apiVersion": {"const": "monitoring.coreos.com/v1"},
                   "kind": {"const": "ServiceMonitor"}, "metadata": _METADATA,
                   "spec": {"type": "object", "required": ["selector", "endpoints"],
                            "additionalProperties": False, "properties": {
        "jobLabel": {"type": "string"},
        "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
            "any": {"type": "boolean"},
            "matchNames": {"type": "array", "items": {"type": "string"}}}},
        "selector": {"type": "object", "additionalProperties": False, "properties": {
            "matchLabels": _STRING_MAP, "matchExpressions": {"type": "array"}}},
        "targetLabels": {"type": "array", "items": {"type": "string"}},
        "podTargetLabels": {"type": "array", "items": {"type": "string"}},
        "sampleLimit": {"type": "integer"},
        "endpoints": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "properties": {
                "port": {"type": "string"},
                "path": {"type": "string", "pattern": "^/"},
                "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                "interval": _DURATION, "scrapeTimeout": _DURATION,
                "honorLabels": {"type": "boolean"}, "honorTimestamps": {"type": "boolean"},
                "enableHttp2": {"type": "boolean"}, "followRedirects": {"type": "boolean"},
                "params": {"type": "object"},
                "relabelings": {"type": "array", "items": _RELABEL},
                "metricRelabelings": {"type": "array", "items": _RELABEL},
                "basicAuth": {"type": "object", "additionalProperties": False, "properties": {
                    "username": _KEY_SELECTOR, "password": _KEY_SELECTOR}},
                "authorization": {"type": "object", "additionalProperties": False,
                                  "properties": {"type": {"type": "string"},
                                                 "credentials": _KEY_SELECTOR}},
                "tlsConfig": {"type": "object", "additionalProperties": False, "properties": {
                    "ca": _SECRET_OR_CONFIGMAP, "cert": _SECRET_OR_CONFIGMAP,
                    "keySecret": _KEY_SELECTOR, "serverName": {"type": "string"},
                    "insecureSkipVerify": {"type": "boolean"},
                    "caFile": {"type": "string"}, "certFile": {"type": "string"},
                    "keyFile": {"type": "string"},
                    "minVersion": {"enum": ["TLS10", "TLS11", "TLS12", "TLS13"]},
                    "maxVersion": {"enum": ["TLS10", "TLS11", "TLS12", "TLS13"]}}}}}}}}}}


PROMETHEUS_RULE_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {"apiVersion": {"const": "monitoring.coreos.com/v1"},
                   "kind": {"const": "PrometheusRule"}, "metadata": _METADATA,
                   "spec": {"type": "object", "required": ["groups"],
                            "additionalProperties": False, "properties": {
        "groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "rules"], "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "interval": _DURATION, "query_offset": _DURATION,
                "limit": {"type": "integer"}, "labels": _STRING_MAP,
                "partial_response_strategy": {"type": "string"},
                "rules": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["expr"], "additionalProperties": False,
                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                    "properties": {
                        "alert": {"type": "string", "minLength": 1},
                        "record": {"type": "string",
                                   "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
                        "expr": {"type": ["string", "integer"]},
                        "for": _DURATION, "keep_firing_for": _DURATION,
                        "labels": _STRING_MAP,
                        "annotations": _STRING_MAP}}}}}}}}}}


OPERATOR_SCHEMAS = {"ServiceMonitor": SERVICE_MONITOR_SCHEMA,
                    "PrometheusRule": PROMETHEUS_RULE_SCHEMA}


def check_operator_object(obj: Manifest) -> None:
    schema = OPERATOR_SCHEMAS.get(obj["kind"])
    assert schema is not None, f"no schema for {obj['apiVersion']} {obj['kind']}"
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=str)
    assert not errors, f"{obj['kind']}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_operator_schemas_catch_mistakes() -> None:
    """The hand-written CRD checks are not vacuous."""
    monitor = one(render(ci_values("everything-on")), "ServiceMonitor")
    check_operator_object(monitor)
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(AssertionError, match="intervall"):
        check_operator_object(broken)
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(AssertionError, match="interval"):
        check_operator_object(broken)
