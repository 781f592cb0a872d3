"""The README documents every setting, and CI runs the README's test command."""

from __future__ import annotations

import re
import subprocess
import sys

from exporter.config.options import ACCOUNT_OPTIONS, OPTIONS
from testkit.repo import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def test_every_flag_and_variable_is_in_the_configuration_reference() -> None:
    for option in OPTIONS + ACCOUNT_OPTIONS:
        assert f"`--{option.flag}`" in README, option.flag
        assert f"`{option.env}`" in README, option.env
    for variable in ("SCENARIO_API_KEY", "SCENARIO_API_SECRET", "SCENARIO_SDK_API_KEY",
                     "SCENARIO_SDK_API_SECRET", "SCENARIO_API_SECRET_FILE", "SCENARIO_API_KEY_FILE",
                     "SCENARIO_EXPORTER_CONFIG_FILE"):
        assert f"`{variable}`" in README, variable


def test_ci_runs_the_test_command_of_the_readme() -> None:
    first_screen = README.split("\n---\n")[0]
    commands = re.findall(r"```sh\n(.+?)\n```", first_screen)
    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/scenario-exporter --demo",
        "bash scripts/test.sh"]
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci


def test_every_metric_of_the_contract_is_documented() -> None:
    from exporter.metrics.counters import COUNTERS

    metrics_doc = (REPO_ROOT / "docs" / "metrics.md").read_text()
    for spec in COUNTERS:
        assert f"`{spec.name}_total`" in metrics_doc, spec.name


def test_the_shared_values_import_no_other_layer() -> None:
    """usage.py is what the layers share: importing it pulls in no scheduler, client, web."""
    code = ("import sys, exporter.core.values; "
            "print(sorted(m for m in sys.modules if m.startswith(('exporter', 'httpx', "
            "'pydantic', 'prometheus_client', 'cachetools'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == ("['exporter', 'exporter.core', 'exporter.core.period', "
                                     "'exporter.core.values']")
