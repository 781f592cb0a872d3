"""The Helm chart, rendered by the real helm binary and checked object by object.

Every case (default values and each ``ci/*-values.yaml``) must lint strictly,
render, and pass Kubernetes' own schemas (kubernetes-validate, offline) for the
oldest Kubernetes the chart supports and the newest the package knows; the
Prometheus Operator kinds are checked against a hand-written subset of their
CRD schemas, and the rules through ``promtool check rules``. The rendered
Deployment is also fed to the exporter's own argument and config parsing, so
chart and exporter cannot drift apart.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from testkit.helm import (
    CASES,
    CHART,
    CI_VALUES,
    MOUNT_ROOT,
    NAMESPACE,
    RELEASE,
    Manifest,
    RenderError,
    case_id,
    ci_values,
    container,
    helm,
    install_dry_run,
    load_values,
    of_kind,
    one,
    render,
    self_signed_pair,
    volume_of,
)
from testkit.repo import IN_CI, REPO_ROOT
from testkit.tools import require_tool


def _kube_versions() -> list[str]:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    oldest = re.search(r">=\s*v?(\d+\.\d+)", chart["kubeVersion"])
    assert oldest, f"Chart.yaml kubeVersion {chart['kubeVersion']!r} has no lower bound"
    return [oldest.group(1), ".".join(kubernetes_validate.latest_version().split(".")[:2])]


KUBE_VERSIONS = _kube_versions()


# ---------------------------------------------------------------------------
# Lint, render, schemas
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Security
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("values", CASES, ids=case_id)
def test_hardened_security_context(values: Path | None) -> None:
    objects = render(values)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for name in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(name)
    context = container(objects)["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert not context["capabilities"].get("add")
    assert context.get("privileged") is not True
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # The only writable path is a bounded emptyDir on /tmp.
    mounts = {m["mountPath"]: m for m in container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"]["sizeLimit"]
    for path, mount in mounts.items():
        if path != "/tmp":
            assert mount.get("readOnly") is True, path
        assert "subPath" not in mount, "subPath mounts do not see Secret updates"
        assert "hostPath" not in volumes.get(mount["name"], {})
    for account in of_kind(objects, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_no_default_resources() -> None:
    """Resources are left to the user (documented in values.yaml)."""
    assert "resources" not in container(render())


SECRET = "s3cr3t-" + "9d1f4c2ab7e0"


def _chart_secrets(objects: list[Manifest]) -> list[Manifest]:
    return of_kind(objects, "Secret")


@pytest.mark.parametrize("sets", [
    pytest.param(["scenario.apiKey=key-1", f"scenario.apiSecret={SECRET}"], id="single"),
    pytest.param(["accounts[0].name=a", "accounts[0].apiKey=key-1",
                  f"accounts[0].apiSecret={SECRET}", "accounts[1].name=b",
                  "accounts[1].apiKey=key-2", "accounts[1].existingSecret=b-secret"],
                 id="accounts"),
])
def test_secret_value_only_inside_the_secret(sets: list[str]) -> None:
    objects = render(sets=sets)
    encoded = base64.b64encode(SECRET.encode()).decode()
    holders = []
    for obj in objects:
        text = yaml.safe_dump(obj)
        if SECRET in text or encoded in text:
            holders.append(obj)
    assert [(o["kind"], o["metadata"]["name"]) for o in holders] == [
        ("Secret", f"{RELEASE}-scenario-exporter")]
    assert SECRET not in yaml.safe_dump(holders[0]), "stored base64-encoded, in data"
    # Nor in NOTES, nor anywhere else helm prints at install.
    notes = install_dry_run(sets)
    assert SECRET not in notes
    assert notes.count(encoded) == 1
    # The pod gets it as a file, never as a literal environment value.
    for env in container(objects).get("env", []):
        assert "value" not in env or SECRET not in env["value"]
        assert env["name"] != "SCENARIO_API_SECRET", "secrets go in files, not variables"


def test_existing_secret_creates_no_secret() -> None:
    values = ci_values("existing-secret")
    config = load_values(values)
    objects = render(values)
    assert not _chart_secrets(objects)
    env = {e["name"]: e for e in container(objects)["env"]}
    # Both as files of one mounted Secret, so that a rotated pair applies without a restart.
    assert set(env) == {"SCENARIO_API_KEY_FILE", "SCENARIO_API_SECRET_FILE"}
    key_file = Path(env["SCENARIO_API_KEY_FILE"]["value"])
    secret_file = Path(env["SCENARIO_API_SECRET_FILE"]["value"])
    assert key_file.parent == secret_file.parent
    volume = volume_of(objects, key_file.parent)
    assert volume["projected"]["sources"] == [{"secret": {
        "name": config["existingSecret"],
        "items": [{"key": config["existingSecretKeys"]["apiKey"], "path": key_file.name},
                  {"key": config["existingSecretKeys"]["apiSecret"],
                   "path": secret_file.name}]}}]


def test_accounts_with_their_own_secrets_create_no_secret() -> None:
    objects = render(sets=["accounts[0].name=a", "accounts[0].apiKey=k",
                           "accounts[0].existingSecret=s"])
    assert not _chart_secrets(objects)


def test_defaults_create_only_the_workload() -> None:
    kinds = sorted(o["kind"] for o in render())
    assert kinds == ["Deployment", "Service", "ServiceAccount"]


def test_demo_needs_no_credentials() -> None:
    objects = render(ci_values("demo"))
    assert "--demo" in container(objects)["args"]
    assert not _chart_secrets(objects)
    assert "env" not in container(objects)


@pytest.mark.parametrize("sets, message", [
    (["existingSecret=x", "scenario.apiKey=k", "scenario.apiSecret=s"], "not existingSecret"),
    (["scenario.apiKey=k"], "set both apiKey and apiSecret"),
    (["demo=true", "existingSecret=x"], "demo"),
    (["accounts[0].name=a", "accounts[0].apiKey=k", "accounts[0].existingSecret=s",
      "scenario.budgetCreativeUnits=5"], "each entry of accounts"),
    (["accounts[0].name=a", "accounts[0].apiKey=k", "accounts[0].existingSecret=s",
      "accounts[1].name=a", "accounts[1].apiKey=k", "accounts[1].existingSecret=s"],
     "used twice"),
    (["web.tls.secretName=tls"], "web.tls.enabled=true"),
    (["web.tls.enabled=true"], "web.tls.secretName"),
    (["web.config.tls_server_config.cert_file=/c"], "web.tls.enabled=true"),
])
def test_contradictory_values_fail_with_a_message(sets: list[str], message: str) -> None:
    with pytest.raises(RenderError, match=re.escape(message)):
        render(sets=sets)


# ---------------------------------------------------------------------------
# The schema
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("override", [
    pytest.param({"replicaCount": "two"}, id="string-for-integer"),
    pytest.param({"serviceMonitor": {"enabled": "yes"}}, id="string-for-boolean"),
    pytest.param({"serviceMonitr": {"enabled": True}}, id="typo-top-level"),
    pytest.param({"serviceMonitor": {"intervall": "30s"}}, id="typo-nested"),
    pytest.param({"serviceMonitor": {"interval": "30 seconds"}}, id="bad-duration"),
    pytest.param({"image": {"pullPolicy": "Sometimes"}}, id="bad-enum"),
    pytest.param({"accounts": [{"name": "a b", "apiKey": "k", "existingSecret": "s"}]},
                 id="bad-account-name"),
    pytest.param({"accounts": [{"name": "a", "apiKey": "k"}]}, id="account-without-secret"),
    pytest.param({"scenario": {"budgetCreativeUnits": "lots"}}, id="string-for-number"),
    pytest.param({"podAnnotations": {"a": 1}}, id="non-string-annotation"),
    pytest.param({"strategy": {"typ": "Recreate"}}, id="typo-strategy"),
    pytest.param({"podDisruptionBudget": {"minAvailable": "lots"}}, id="bad-min-available"),
    pytest.param({"extraContainers": {"name": "x"}}, id="object-for-list"),
])
def test_schema_rejects_bad_values(override: dict[str, Any], tmp_path: Path) -> None:
    values = tmp_path / "bad-values.yaml"
    values.write_text(yaml.safe_dump(override))
    with pytest.raises(RenderError, match="schema"):
        render(values)


def test_schema_is_draft_07_and_accepts_the_defaults() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    for values in [None, *CI_VALUES]:
        jsonschema.Draft7Validator(schema).validate(load_values(values))


def test_every_value_is_in_the_schema() -> None:
    """values.yaml and the schema list the same keys (no undocumented knobs)."""
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(values: dict[str, Any], node: dict[str, Any], where: str) -> Iterator[str]:
        properties = node.get("properties")
        if properties is None:
            return
        for key, value in values.items():
            if key not in properties:
                yield f"{where}{key}"
            elif isinstance(value, dict) and value:
                yield from walk(value, properties[key], f"{where}{key}.")

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert list(walk(values, schema, "")) == []
    assert set(schema["properties"]) - set(values) == {"global"}


# ---------------------------------------------------------------------------
# Chart and exporter agree
# ---------------------------------------------------------------------------


def test_app_version_equals_package_version() -> None:
    import exporter

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == exporter.__version__
    assert container(render())["image"].endswith(f":{exporter.__version__}")


def test_port_and_probes_match_the_exporter() -> None:
    from exporter.config.settings import Settings

    default_port = int(Settings.model_fields["listen_address"].default.rpartition(":")[2])
    values = load_values(None)
    assert values["containerPort"] == default_port
    assert values["service"]["port"] == default_port
    main = container(render())
    assert main["ports"] == [{"name": "http-metrics", "containerPort": default_port,
                              "protocol": "TCP"}]
    assert main["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http-metrics",
                                                "scheme": "HTTP"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http-metrics",
                                                 "scheme": "HTTP"}


def _materialise_pod(objects: list[Manifest], root: Path) -> tuple[list[str], dict[str, str],
                                                                   dict[str, str]]:
    """Lay the pod's mounted files under *root*, as kubelet would under /.

    Returns the container's args and environment with paths moved under
    *root*, and the secret each mounted file holds (existing Secrets, which the
    chart does not render, get a made-up value naming their Secret and key).
    """
    rendered = {(o["kind"], o["metadata"]["name"]): o for o in objects}

    def secret_value(name: str, key: str) -> str:
        secret = rendered.get(("Secret", name))
        if secret is None:
            return f"external:{name}:{key}"
        return base64.b64decode(secret["data"][key]).decode()

    main = container(objects)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    files: dict[str, str] = {}
    for mount in main["volumeMounts"]:
        volume = volumes[mount["name"]]
        target = root / mount["mountPath"].lstrip("/")
        entries: list[tuple[str, str]] = []
        if "configMap" in volume and ("ConfigMap", volume["configMap"]["name"]) in rendered:
            data = rendered[("ConfigMap", volume["configMap"]["name"])]["data"]
            entries = list(data.items())
        elif "projected" in volume:
            for source in volume["projected"]["sources"]:
                for item in source["secret"]["items"]:
                    entries.append((item["path"],
                                    secret_value(source["secret"]["name"], item["key"])))
        elif "secret" in volume and ("Secret", volume["secret"]["secretName"]) in rendered:
            for item in volume["secret"].get("items", []):
                entries.append((item["path"],
                                secret_value(volume["secret"]["secretName"], item["key"])))
        elif "secret" in volume and mount["mountPath"] == f"{MOUNT_ROOT}/tls":
            # A kubernetes.io/tls Secret the user (or cert-manager) provides.
            target.mkdir(parents=True, exist_ok=True)
            cert, key = self_signed_pair(target)
            shutil.copy(cert, target / "ca.crt")
        for relative, content in entries:
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            text = content.replace(MOUNT_ROOT, str(root / MOUNT_ROOT.lstrip("/")))
            path.write_text(text)
            files[str(path)] = content
    env = {}
    for item in main.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"].replace(MOUNT_ROOT,
                                                      str(root / MOUNT_ROOT.lstrip("/")))
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secret_value(ref["name"], ref["key"])
    args = [a.replace(MOUNT_ROOT, str(root / MOUNT_ROOT.lstrip("/"))) for a in main["args"]]
    return args, env, files


@pytest.mark.parametrize("values", CASES, ids=case_id)
def test_exporter_accepts_the_rendered_args_and_files(values: Path | None, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter's own parser takes the Deployment's args, env and mounted files."""
    from exporter.cli.main import parse

    objects = render(values)
    args, env, _ = _materialise_pod(objects, tmp_path)
    for name in [n for n in os.environ if n.startswith("SCENARIO")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = load_values(values)
    mode = ("accounts" if config["accounts"] else "existing" if config["existingSecret"]
            else "inline" if config["scenario"]["apiKey"] else
            "demo" if config["demo"] else "none")
    if mode == "none":
        with pytest.raises(Exception, match="credentials"):
            parse(args)
        return
    invocation = parse(args)
    settings = invocation.settings
    assert invocation.command == "serve"
    web_config = [a.partition("=")[2] for a in args if a.startswith("--web.config.file=")]
    if web_config and Path(web_config[0]).exists():
        from exporter.web.config import parse_web_config

        parsed = parse_web_config(web_config[0])
        assert (parsed.tls is not None) == bool(config["web"]["tls"]["enabled"])
    if mode == "accounts":
        expected = {a["name"]: a for a in config["accounts"]}
        assert [a.name for a in settings.accounts] == list(expected)
        for account in settings.accounts:
            want = expected[account.name]
            assert account.key() == want["apiKey"]
            if "apiSecret" in want:
                assert account.secret() == want["apiSecret"]
            else:
                assert account.secret() == (f"external:{want['existingSecret']}:"
                                            f"{want.get('existingSecretKey', 'api-secret')}")
            assert account.budget_creative_units == want.get("budgetCreativeUnits")
            assert list(account.project_ids) == want.get("projectIds", [])
    elif mode == "demo":
        assert settings.demo is True
        (account,) = settings.accounts
        assert account.budget_creative_units == config["scenario"]["budgetCreativeUnits"]
    else:
        (account,) = settings.accounts
        if mode == "existing":
            assert account.key() == (f"external:{config['existingSecret']}:"
                                       f"{config['existingSecretKeys']['apiKey']}")
            assert account.secret() == (f"external:{config['existingSecret']}:"
                                        f"{config['existingSecretKeys']['apiSecret']}")
        else:
            assert account.key() == config["scenario"]["apiKey"]
            assert account.secret() == config["scenario"]["apiSecret"]
        assert list(account.project_ids) == config["scenario"]["projectIds"]
        assert account.budget_creative_units == config["scenario"]["budgetCreativeUnits"]


def test_config_change_rolls_the_pods() -> None:
    def checksum(ttl: str) -> str:
        deployment = one(render(ci_values("multi-account"), sets=[f"config.cache.ttl={ttl}"]),
                         "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum("10m") != checksum("15m")


# ---------------------------------------------------------------------------
# Web config and TLS (issue 6)
# ---------------------------------------------------------------------------


def test_tls_switches_probes_and_scrapes_to_https() -> None:
    objects = render(sets=["existingSecret=creds", "web.tls.enabled=true",
                           "web.tls.secretName=exporter-tls", "serviceMonitor.enabled=true"])
    main = container(objects)
    assert main["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert main["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    endpoint = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {
        "serverName": f"{RELEASE}-scenario-exporter.{NAMESPACE}.svc",
        "ca": {"secret": {"name": "exporter-tls", "key": "ca.crt"}}}
    web = yaml.safe_load(base64.b64decode(
        one(objects, "Secret")["data"]["web-config.yml"]).decode())
    tls_dir = _volume_mount_path(objects, "exporter-tls")
    assert web == {"tls_server_config": {"cert_file": f"{tls_dir}/tls.crt",
                                         "key_file": f"{tls_dir}/tls.key"}}
    assert f"--web.config.file={MOUNT_ROOT}/web/web-config.yml" in main["args"]


def _volume_mount_path(objects: list[Manifest], secret_name: str) -> str:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"]
                  if v.get("secret", {}).get("secretName") == secret_name)
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == volume["name"])
    return str(mount["mountPath"])


def test_web_config_is_a_secret_and_keeps_user_tls_settings() -> None:
    objects = render(ci_values("everything-on"))
    values = load_values(ci_values("everything-on"))
    (web_secret,) = [s for s in of_kind(objects, "Secret") if "web-config.yml" in s["data"]]
    web = yaml.safe_load(base64.b64decode(web_secret["data"]["web-config.yml"]).decode())
    assert web["basic_auth_users"] == values["web"]["config"]["basic_auth_users"]
    assert web["http_server_config"] == values["web"]["config"]["http_server_config"]
    assert "tls_server_config" in web
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            assert "basic_auth_users" not in yaml.safe_dump(obj)


@pytest.mark.parametrize("sets, warned", [
    (["demo=true", "web.config.basic_auth_users.u=$2b$10$x"], True),
    (["demo=true", "web.config.basic_auth_users.u=$2b$10$x", "web.healthWithoutAuth=true"],
     False),
    (["demo=true", "web.config.basic_auth_users.u=$2b$10$x", "livenessProbe.httpGet=null",
      "livenessProbe.tcpSocket.port=http-metrics", "readinessProbe.httpGet=null",
      "readinessProbe.tcpSocket.port=http-metrics"], False),
])
def test_notes_warn_when_basic_auth_would_fail_the_probes(sets: list[str],
                                                          warned: bool) -> None:
    notes = install_dry_run(sets).partition("NOTES:")[2]
    assert ("will get 401" in notes) is warned
    assert "-u USER:PASSWORD" in notes


def test_health_without_auth_flag_and_tcp_probes() -> None:
    main = container(render(ci_values("everything-on")))
    assert "--web.health-without-auth" in main["args"]
    assert main["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    main = container(render(ci_values("web-existing-secret")))
    assert "--web.health-without-auth" not in main["args"]
    assert "httpGet" not in main["livenessProbe"]
    assert main["livenessProbe"]["tcpSocket"] == {"port": "http-metrics"}
    assert main["readinessProbe"]["tcpSocket"] == {"port": "http-metrics"}


def test_notes_without_credentials_say_how_to_give_them() -> None:
    notes = install_dry_run([]).partition("NOTES:")[2]
    assert "no Scenario credentials" in notes
    assert "existingSecret=" in notes
    assert "port-forward service/" in notes


def test_web_config_from_an_existing_secret() -> None:
    values = ci_values("web-existing-secret")
    objects = render(values)
    assert not of_kind(objects, "Secret")
    volume = volume_of(objects, Path(f"{MOUNT_ROOT}/web"))
    assert volume["secret"]["secretName"] == "scenario-web-config"
    assert volume["secret"]["items"] == [{"key": "web.yml", "path": "web-config.yml"}]
    endpoint = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["tlsConfig"] == load_values(values)["serviceMonitor"]["tlsConfig"]


def test_web_config_file_examples_pass_promtool(tmp_path: Path) -> None:
    """The web config the chart writes is one Prometheus' own tooling accepts."""
    promtool = require_tool("promtool")
    objects = render(ci_values("everything-on"))
    (web_secret,) = [s for s in of_kind(objects, "Secret") if "web-config.yml" in s["data"]]
    web = yaml.safe_load(base64.b64decode(web_secret["data"]["web-config.yml"]).decode())
    # promtool opens the certificate files: point them at a throw-away pair.
    cert, key = self_signed_pair(tmp_path)
    web["tls_server_config"] = {"cert_file": str(cert), "key_file": str(key)}
    path = tmp_path / "web-config.yml"
    path.write_text(yaml.safe_dump(web))
    result = subprocess.run([promtool, "check", "web-config", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------
# Monitoring objects
# ---------------------------------------------------------------------------


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = {o["kind"] for o in render()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "ConfigMap"}


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


def test_network_policy_allows_scrapes_dns_and_https_only() -> None:
    objects = render(ci_values("everything-on"))
    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"] == (
        one(objects, "Deployment")["spec"]["selector"]["matchLabels"])
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    assert ingress["from"] == load_values(ci_values("everything-on"))["networkPolicy"][
        "ingressFrom"]
    egress_ports = sorted((p["port"], p["protocol"]) for rule in policy["egress"]
                          for p in rule["ports"])
    assert egress_ports == [(53, "TCP"), (53, "UDP"), (443, "TCP")]



# ---------------------------------------------------------------------------
# Options operators expect (issue 14)
# ---------------------------------------------------------------------------


def test_pod_disruption_budget_and_strategy() -> None:
    objects = render(ci_values("operator-options"))
    deployment = one(objects, "Deployment")
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"] == {"minAvailable": "50%",
                              "selector": deployment["spec"]["selector"]}
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    default = render(sets=["podDisruptionBudget.enabled=true"])
    assert one(default, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert "strategy" not in one(default, "Deployment")["spec"], "Kubernetes' default"
    with pytest.raises(RenderError, match="set minAvailable or maxUnavailable, not both"):
        render(sets=["podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=1",
                     "podDisruptionBudget.maxUnavailable=1"])


def test_extra_manifests_and_containers_are_templated() -> None:
    objects = render(ci_values("everything-on"))
    extra = {o["metadata"]["name"]: o for o in of_kind(objects, "ConfigMap")}
    assert extra[f"{RELEASE}-extra-string"]["data"] == {"note": "a template string"}
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["exporter", "sidecar"]
    assert pod["containers"][1]["args"] == [f"--target={RELEASE}"]
    mapped = one(render(ci_values("operator-options")), "ConfigMap")
    assert mapped["metadata"]["name"] == f"{RELEASE}-extra"
    assert mapped["metadata"]["namespace"] == NAMESPACE


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


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["home"].startswith("https://")
    assert chart["sources"] and all(s.startswith("https://") for s in chart["sources"])
    assert chart["icon"].startswith("https://") and chart["icon"].endswith("/docs/icon.svg")
    assert (REPO_ROOT / "docs" / "icon.svg").exists()
    assert chart["maintainers"][0]["name"]


def test_chart_readme_parameters_are_generated_from_values(tmp_path: Path) -> None:
    generator = REPO_ROOT / ".cache" / "readme-generator" / "node_modules" / ".bin" / \
        "readme-generator"
    if not generator.exists():
        message = "readme-generator-for-helm is not installed (scripts/test.sh installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    readme = tmp_path / "README.md"
    shutil.copy(CHART / "README.md", readme)
    result = subprocess.run([str(generator), "--values", str(CHART / "values.yaml"),
                             "--readme", str(readme)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert readme.read_text() == (CHART / "README.md").read_text(), (
        "the chart README is out of date: run bash scripts/chart-readme.sh")
    text = readme.read_text()
    for section in ("## Install", "## Upgrade", "## Uninstall", "## The image"):
        assert section in text
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in ("podDisruptionBudget.enabled", "strategy", "extraContainers", "extraManifests",
                "serviceMonitor.interval"):
        assert f"| `{key}`" in text, key
    assert set(values) <= {line.split("`")[1].split(".")[0]
                           for line in text.splitlines() if line.startswith("| `")}
