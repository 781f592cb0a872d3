"""The code stays ruff-clean, and the package and the mixin mypy --strict clean."""

from __future__ import annotations

import subprocess
import sys

from testkit.repo import REPO_ROOT


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)


def test_ruff() -> None:
    result = _run("ruff", "check", "--output-format", "concise",
                  "exporter", "mixin", "testkit", "tests", "bench", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = _run("mypy", "--strict", "exporter", "mixin", "testkit")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_layers_hold() -> None:
    """The import contracts of pyproject.toml: each layer imports only those below it, and
    the backfill never imports the live exporter (``lint-imports`` reads every import)."""
    result = subprocess.run(["lint-imports", "--no-cache"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


MAX_MODULE_LINES = 400


def test_no_module_of_the_package_is_over_400_lines() -> None:
    """A module a newcomer can read in one sitting: split a longer one by concern."""
    sizes = {path.relative_to(REPO_ROOT).as_posix(): len(path.read_text().splitlines())
             for package in ("exporter", "mixin")
             for path in (REPO_ROOT / package).rglob("*.py")}
    assert sizes, "no module found"
    assert {path: n for path, n in sizes.items() if n > MAX_MODULE_LINES} == {}


MAX_TEST_FILE_LINES = 500


def test_no_test_file_is_over_500_lines() -> None:
    """A test file covers one topic; a longer one is split by topic (tests/ is laid out by
    layer, testkit/ holds what several share)."""
    sizes = {path.relative_to(REPO_ROOT).as_posix(): len(path.read_text().splitlines())
             for folder in ("tests", "testkit", "bench")
             for path in (REPO_ROOT / folder).rglob("*.py")}
    assert len(sizes) > 50
    assert {path: n for path, n in sizes.items() if n > MAX_TEST_FILE_LINES} == {}
