"""The Helm chart as the tests see it: rendered by the real ``helm`` binary (``helm template``
and ``helm install --dry-run``), its objects picked by kind, its values loaded and merged as
helm merges them, the cases every test runs over (the defaults and each
``ci/*-values.yaml``), and the files of a TLS Secret for the pod the tests lay out.

Pytest-free: :func:`helm` finds the binary through :func:`testkit.tools.require_tool`,
imported when first called.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Sequence
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
