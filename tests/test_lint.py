"""The code stays ruff-clean, and the package mypy --strict clean."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)


def test_ruff() -> None:
    result = _run("ruff", "check", "--output-format", "concise",
                  "exporter", "tests", "bench", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = _run("mypy", "--strict", "exporter", "tests/fake_upstream.py")
    assert result.returncode == 0, result.stdout + result.stderr
