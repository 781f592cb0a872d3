"""The chart's metadata and README: Chart.yaml's links, icon and maintainers, and the README's
parameters table, generated from values.yaml's ``## @param`` comments by
readme-generator-for-helm and up to date, with its install, upgrade and uninstall sections.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from testkit.helm import CHART, chart_yaml, load_values
from testkit.repo import IN_CI, REPO_ROOT


def test_chart_metadata() -> None:
    chart = chart_yaml()
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
    values = load_values(None)
    for key in ("podDisruptionBudget.enabled", "strategy", "extraContainers", "extraManifests",
                "serviceMonitor.interval"):
        assert f"| `{key}`" in text, key
    assert set(values) <= {line.split("`")[1].split(".")[0]
                           for line in text.splitlines() if line.startswith("| `")}
