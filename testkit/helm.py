"""The Helm chart as the tests see it: rendered by the real ``helm`` binary (``helm template``
and ``helm install --dry-run``), its objects picked by kind, its values loaded and merged as
helm merges them, the cases every test runs over (the defaults and each
``ci/*-values.yaml``), and the files of a TLS Secret for the pod the tests lay out.

Pytest-free: :func:`helm` finds the binary through :func:`testkit.tools.require_tool`,
imported when first called.
"""

from __future__ import annotations

import base64
import functools
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from testkit.pki import make_pki
from testkit.repo import REPO_ROOT

CHART = REPO_ROOT / "helm" / "scenario-exporter"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# Every case a test runs over: the chart's defaults (None), then each CI values file.
CASES: list[Path | None] = [None, *CI_VALUES]
NAMESPACE = "monitoring"
RELEASE = "scen"
MOUNT_ROOT = "/etc/scenario-exporter"

Manifest = dict[str, Any]


def case_id(values: Path | None) -> str:
    """The test id of a case of :data:`CASES`: ``default`` or the values file's stem."""
    return values.stem if values else "default"


class RenderError(Exception):
    """helm template failed; str() is its stderr."""


@functools.cache
def helm() -> str:
    """The helm binary (skipped locally, failed in CI, when missing)."""
    from testkit.tools import require_tool

    return require_tool("helm")


@functools.cache
def _run_template(values_files: tuple[str, ...], sets: tuple[str, ...],
                  set_strings: tuple[str, ...]) -> str:
    command = [helm(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for path in values_files:
        command += ["--values", path]
    for item in sets:
        command += ["--set", item]
    for item in set_strings:
        command += ["--set-string", item]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RenderError(result.stderr.strip())
    return result.stdout


def render(values: Path | None = None, *, sets: Sequence[str] = (),
           set_strings: Sequence[str] = (), extra_files: Sequence[Path] = ()) -> list[Manifest]:
    """Render the chart with ``helm template``; return its objects."""
    files = tuple(str(p) for p in ([values] if values else []) + list(extra_files))
    text = _run_template(files, tuple(sets), tuple(set_strings))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def install_dry_run(sets: Sequence[str]) -> str:
    """What ``helm install --dry-run=client`` prints: the objects, then the NOTES."""
    command = [helm(), "install", RELEASE, str(CHART), "--namespace", NAMESPACE,
               "--dry-run=client"]
    for item in sets:
        command += ["--set", item]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "NOTES:" in result.stdout, result.stdout
    return result.stdout


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[Manifest], kind: str) -> Manifest:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def pod_spec(objects: list[Manifest]) -> Manifest:
    """The spec of the pod template of the one Deployment."""
    pod: Manifest = one(objects, "Deployment")["spec"]["template"]["spec"]
    return pod


def container(objects: list[Manifest]) -> Manifest:
    """The exporter's container (first; extraContainers come after it)."""
    main: Manifest = pod_spec(objects)["containers"][0]
    assert main["name"] == "exporter", f"the first container is {main['name']!r}"
    return main


def volume_of(objects: list[Manifest], mount_dir: Path) -> Manifest:
    """The pod's volume that the exporter's container mounts on *mount_dir*."""
    mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
    name = mounts[str(mount_dir)]
    return next(v for v in pod_spec(objects)["volumes"] if v["name"] == name)


def chart_yaml() -> dict[str, Any]:
    """The chart's Chart.yaml."""
    chart: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return chart


def ci_values(name: str) -> Path:
    path = CHART / "ci" / f"{name}-values.yaml"
    assert path.exists(), path
    return path


def load_values(path: Path | None) -> dict[str, Any]:
    """values.yaml (with *path*, if any, merged over it as helm merges them: null deletes a
    key)."""
    base: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    if path is not None:
        _merge(base, yaml.safe_load(path.read_text()) or {})
    return base


def _merge(base: dict[str, Any], override: dict[str, Any]) -> None:
    for key, value in override.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def write_tls_secret(directory: Path) -> tuple[Path, Path]:
    """Lay out in *directory* what kubelet mounts for a kubernetes.io/tls Secret: a server
    certificate and its key from a throw-away PKI (:mod:`testkit.pki`) as tls.crt and
    tls.key, and its CA as ca.crt. Returns the certificate's and the key's paths."""
    pki = make_pki()
    pki.server.write(directory, "tls.crt", "tls.key")
    (directory / "ca.crt").write_bytes(pki.ca.cert)
    return directory / "tls.crt", directory / "tls.key"


# --- A rendered workload's container, run on this machine -------------------------------

# The image's ENTRYPOINT (Dockerfile): the console script of pyproject.toml, which
# `python -m exporter` runs the same (exporter/__main__.py).
ENTRYPOINT = "scenario-exporter"
LOCAL_ENTRYPOINT = (sys.executable, "-m", "exporter")

# (kind, name) -> that object's data, decoded: {"key": "value"}.
Refs = Mapping[tuple[str, str], Mapping[str, str]]


def object_data(objects: Sequence[Manifest], refs: Refs | None = None
                ) -> dict[tuple[str, str], dict[str, str]]:
    """The data of every Secret and ConfigMap among *objects* (a Secret's ``data`` decoded
    from base64, its ``stringData`` as is), by ``(kind, name)``, with *refs* (objects the
    chart does not render, such as an existing Secret) over them."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for obj in objects:
        data: dict[str, str] = {}
        if obj["kind"] == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            data.update(obj.get("stringData") or {})
        elif obj["kind"] == "ConfigMap":
            data = dict(obj.get("data") or {})
        else:
            continue
        found[(obj["kind"], obj["metadata"]["name"])] = data
    for ref, values in (refs or {}).items():
        found[ref] = dict(values)
    return found


def _pod(workload: Manifest) -> Manifest:
    pod: Manifest = workload["spec"]["template"]["spec"]
    return pod


def _container_of(workload: Manifest, name: str | None) -> Manifest:
    containers: list[Manifest] = _pod(workload)["containers"]
    if name is None:
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def _data_of(data: dict[tuple[str, str], dict[str, str]], kind: str,
             name: str) -> dict[str, str]:
    if (kind, name) not in data:
        raise KeyError(f"{kind} {name} is neither rendered nor given in refs")
    return data[(kind, name)]


def _lookup(data: dict[tuple[str, str], dict[str, str]], kind: str, name: str,
            key: str) -> str:
    values = _data_of(data, kind, name)
    if key not in values:
        raise KeyError(f"{kind} {name} has no key {key!r}")
    return values[key]


def map_paths(text: str, files: Mapping[str, Path], *, unmapped: Sequence[str] = ()) -> str:
    """*text* with every container path of *files* (a mount path, or a file under one)
    replaced by its local path, the longest that fits, in one pass:
    ``--config.file=/etc/x/config/config.yml`` with ``{"/etc/x/config": Path("/tmp/c")}``
    gives ``--config.file=/tmp/c/config.yml``. A path counts where a path starts (not
    inside another one) and ends (alone, or followed by ``/`` and more). One of *unmapped*
    (container paths with no local counterpart) found in *text* raises ValueError."""
    local = {path.rstrip("/") or "/": str(target) for path, target in files.items()}
    alternatives = sorted({*local, *(p.rstrip("/") for p in unmapped)}, key=len, reverse=True)
    if not alternatives:
        return text
    pattern = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, alternatives))
                         + r")(?=/|$|[^\w.-])")

    def replace(match: re.Match[str]) -> str:
        if match.group(1) not in local:
            raise ValueError(f"{match.group(1)} is in {text!r}, but has no local path")
        return local[match.group(1)]

    return pattern.sub(replace, text)


def expand_references(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' expansion of ``command``, ``args`` and env values: ``$(NAME)`` becomes the
    value of the container's variable NAME when it has one (else stays as it is), ``$$``
    becomes ``$``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i):
            end = text.find(")", i + 2)
            if end != -1 and text[i + 2:end] in env:
                out.append(env[text[i + 2:end]])
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def write_pod_volumes(workload: Manifest, root: Path, *, objects: Sequence[Manifest] = (),
                      refs: Refs | None = None,
                      container_name: str | None = None) -> dict[str, Path]:
    """Lay out under *root* what kubelet mounts in the container (the first, or
    *container_name*) of *workload* (a Job, a Deployment: anything with a pod template):
    each volume in ``root/<volume name>``, ``configMap``, ``secret`` and ``projected``
    volumes as one file per key (their ``items`` if given), an ``emptyDir`` empty. Secrets
    and ConfigMaps come from *objects* (the rendered chart) or *refs*; a missing one raises
    KeyError, unless ``optional``. Container paths in the files' text (a config file naming
    its secret files) are mapped to local ones. Returns ``{mount path: local path}``, the
    *files* of :func:`job_command_line`.
    """
    data = object_data(objects, refs)
    volumes = {v["name"]: v for v in _pod(workload).get("volumes", [])}
    mounts = _container_of(workload, container_name).get("volumeMounts", [])
    files = {m["mountPath"]: root / m["name"] / m.get("subPath", "") for m in mounts}
    for name in sorted({m["name"] for m in mounts}):
        directory = root / name
        directory.mkdir(parents=True, exist_ok=True)
        for relative, content in _volume_files(volumes[name], data):
            path = directory / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(map_paths(content, files))
    return files


def _volume_files(volume: Manifest, data: dict[tuple[str, str], dict[str, str]]
                  ) -> list[tuple[str, str]]:
    """``(relative path, content)`` of each file of *volume*."""
    if "emptyDir" in volume:
        return []
    if "projected" in volume:
        sources = volume["projected"]["sources"]
    elif "configMap" in volume or "secret" in volume:
        sources = [volume]
    else:
        raise ValueError(f"volume {volume['name']}: only configMap, secret, projected and "
                         "emptyDir volumes can be laid out")
    entries: list[tuple[str, str]] = []
    for source in sources:
        kind = "ConfigMap" if "configMap" in source else "Secret"
        spec = source["configMap" if kind == "ConfigMap" else "secret"]
        name = spec.get("name") or spec.get("secretName")
        if (kind, name) not in data and spec.get("optional"):
            continue
        values = _data_of(data, kind, name)
        items = spec.get("items") or [{"key": key, "path": key} for key in values]
        entries += [(item["path"], _lookup(data, kind, name, item["key"])) for item in items]
    return entries


def job_command_line(workload: Manifest, files: Mapping[str, Path], *,
                     objects: Sequence[Manifest] = (), refs: Refs | None = None,
                     container_name: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run the container (the first, or *container_name*) of
    *workload* (a rendered Job or Deployment) on this machine, as the pod would run it.

    The image's entrypoint (``scenario-exporter``, the container's ``command`` if it sets
    one) becomes :data:`LOCAL_ENTRYPOINT`, ``python -m exporter``. The environment is the
    container's alone (merge it over ``os.environ`` to run it): literal values, and
    ``secretKeyRef`` / ``configMapKeyRef`` / ``envFrom`` read from the Secrets and ConfigMaps
    of *objects* (the rendered chart) or from *refs* (``{("Secret", name): {key: value}}``,
    for objects the chart does not create); a missing one raises KeyError, unless
    ``optional``. Container paths in args and literal env values are mapped through *files*
    (``{container path: local path}``, e.g. from :func:`write_pod_volumes`); a mount path
    that *files* does not map raises ValueError. Last, ``$(NAME)`` references are expanded as
    Kubernetes does (:func:`expand_references`).

        objects = render(sets=["existingSecret=creds", "backfill.enabled=true",
                               "backfill.remoteWrite.url=http://127.0.0.1:9090/api/v1/write"])
        job = one(objects, "Job")
        refs = {("Secret", "creds"): {"api-key": "k", "api-secret": "s"}}
        files = write_pod_volumes(job, tmp_path, objects=objects, refs=refs)
        argv, env = job_command_line(job, files, objects=objects, refs=refs)
        subprocess.run(argv, env={**os.environ, **env}, check=True)
    """
    main = _container_of(workload, container_name)
    data = object_data(objects, refs)
    mounts = [m["mountPath"] for m in main.get("volumeMounts", [])]
    env: dict[str, str] = {}
    for source in main.get("envFrom", []):
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        ref = source["configMapRef" if kind == "ConfigMap" else "secretRef"]
        if (kind, ref["name"]) in data or not ref.get("optional"):
            for key, value in _data_of(data, kind, ref["name"]).items():
                env[source.get("prefix", "") + key] = value
    for item in main.get("env", []):
        if "value" in item:
            env[item["name"]] = expand_references(
                map_paths(item["value"], files, unmapped=mounts), env)
            continue
        source = item.get("valueFrom", {})
        kind = "ConfigMap" if "configMapKeyRef" in source else "Secret"
        ref = source.get("configMapKeyRef") or source.get("secretKeyRef")
        if ref is None:
            raise ValueError(f"env {item['name']}: only value, secretKeyRef and "
                             "configMapKeyRef can be resolved")
        if ref.get("optional") and ref["key"] not in data.get((kind, ref["name"]), {}):
            continue
        env[item["name"]] = _lookup(data, kind, ref["name"], ref["key"])
    command = list(main.get("command") or [ENTRYPOINT])
    if command[0] != ENTRYPOINT:
        raise ValueError(f"the container runs {command[0]!r}, not {ENTRYPOINT}")
    literal = [map_paths(a, files, unmapped=mounts)
               for a in [*command[1:], *main.get("args", [])]]
    argv = [*LOCAL_ENTRYPOINT, *(expand_references(a, env) for a in literal)]
    return argv, env


# --- Shards, label selectors and the Operator's ScrapeConfig -----------------------------

# The label of a shard's pods, Deployment, PodDisruptionBudget and Service (shards > 1).
SHARD_LABEL = "scenario-exporter/shard"


def by_name(objects: Sequence[Manifest], kind: str) -> dict[str, Manifest]:
    """The objects of *kind* among *objects*, by name (in the order rendered)."""
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes LabelSelector (``matchLabels``, ``matchExpressions`` with In,
    NotIn, Exists, DoesNotExist) selects an object labelled *labels*; an empty selector
    selects everything, as in a Deployment's or a ServiceMonitor's. A Service's ``selector``
    (a plain map) is ``{"matchLabels": selector}``."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In":
            ok = key in labels and labels[key] in values
        elif operator == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif operator == "Exists":
            ok = key in labels
        elif operator == "DoesNotExist":
            ok = key not in labels
        else:
            raise ValueError(f"unknown selector operator {operator!r}")
        if not ok:
            return False
    return True


# A hand-written subset of the Prometheus Operator's ScrapeConfig CRD schema
# (monitoring.coreos.com/v1alpha1, as in its 0.67 and later releases): every field the
# chart can write, with its type, unknown fields refused. `scheme` is upper-case only,
# as 0.67 wants it (later releases accept both cases).
_DURATION_PATTERN = (r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                     r"(([0-9]+)s)?(([0-9]+)ms)?)$")
_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_KEY_SELECTOR: dict[str, Any] = {
    "type": "object", "required": ["key"], "additionalProperties": False,
    "properties": {"key": {"type": "string"}, "name": {"type": "string"},
                   "optional": {"type": "boolean"}}}
_SECRET_OR_CONFIGMAP: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {"secret": _KEY_SELECTOR, "configMap": _KEY_SELECTOR}}
_TLS_VERSIONS = ["TLS10", "TLS11", "TLS12", "TLS13"]
_SAFE_TLS: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "properties": {
        "ca": _SECRET_OR_CONFIGMAP, "cert": _SECRET_OR_CONFIGMAP, "keySecret": _KEY_SELECTOR,
        "serverName": {"type": "string"}, "insecureSkipVerify": {"type": "boolean"},
        "minVersion": {"enum": _TLS_VERSIONS}, "maxVersion": {"enum": _TLS_VERSIONS}}}
_BASIC_AUTH: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {"username": _KEY_SELECTOR, "password": _KEY_SELECTOR}}
_AUTHORIZATION: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {"type": {"type": "string"}, "credentials": _KEY_SELECTOR}}
_ACTIONS = ("replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep",
            "lowercase", "uppercase", "keepequal", "dropequal")
_CAMEL = {"hashmod": "HashMod", "labelmap": "LabelMap", "labeldrop": "LabelDrop",
          "labelkeep": "LabelKeep", "keepequal": "KeepEqual", "dropequal": "DropEqual"}
_RELABEL: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "properties": {
        "action": {"enum": [form for action in _ACTIONS
                            for form in (action, _CAMEL.get(action, action.capitalize()))]},
        "modulus": {"type": "integer", "minimum": 1}, "regex": {"type": "string"},
        "replacement": {"type": "string"}, "separator": {"type": "string"},
        "sourceLabels": {"type": "array",
                         "items": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"}},
        "targetLabel": {"type": "string"}}}
SCRAPE_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1alpha1"},
        "kind": {"const": "ScrapeConfig"},
        "metadata": {"type": "object", "required": ["name", "namespace"], "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                     "maxLength": 253},
            "namespace": {"type": "string"}, "labels": _STRING_MAP,
            "annotations": _STRING_MAP}},
        "spec": {"type": "object", "additionalProperties": False, "properties": {
            "httpSDConfigs": {"type": "array", "items": {
                "type": "object", "required": ["url"], "additionalProperties": False,
                "properties": {
                    "url": {"type": "string", "pattern": "^https?://.+$"},
                    "refreshInterval": {"type": "string", "pattern": _DURATION_PATTERN},
                    "basicAuth": _BASIC_AUTH, "authorization": _AUTHORIZATION,
                    "tlsConfig": _SAFE_TLS}}},
            "scheme": {"enum": ["HTTP", "HTTPS"]},
            "metricsPath": {"type": "string"},
            "params": {"type": "object"},
            "scrapeInterval": {"type": "string", "pattern": _DURATION_PATTERN},
            "scrapeTimeout": {"type": "string", "pattern": _DURATION_PATTERN},
            "honorLabels": {"type": "boolean"}, "honorTimestamps": {"type": "boolean"},
            "basicAuth": _BASIC_AUTH, "authorization": _AUTHORIZATION, "tlsConfig": _SAFE_TLS,
            "relabelings": {"type": "array", "items": _RELABEL},
            "metricRelabelings": {"type": "array", "items": _RELABEL}}}}}


def assert_hardened(pod: Manifest, main: Manifest) -> dict[str, Manifest]:
    """The chart's hardening of a pod spec and its main container (the Deployment's, the
    backfill Job's): non-root, RuntimeDefault seccomp, no service-account token, no host
    namespaces; a read-only root, no privilege, every capability dropped; a bounded
    emptyDir on /tmp. Returns the container's mounts by path."""
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for name in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(name)
    context = main["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert not context["capabilities"].get("add")
    assert context.get("privileged") is not True
    mounts: dict[str, Manifest] = {m["mountPath"]: m for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"]["sizeLimit"]
    return mounts
