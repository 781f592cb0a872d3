"""Shared test fixtures.

Tests that need a tool the machine lacks skip with the reason on a developer's
laptop and *fail* in CI (``CI=true``): CI must prove everything.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from child_process import Processes

REPO_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_tool(name: str) -> str:
    """Return the path of executable *name*; skip locally, fail in CI, when missing."""
    extra = REPO_ROOT / ".cache" / "helm" / name
    path = shutil.which(name) or (str(extra) if extra.exists() else None)
    if path is None:
        message = f"{name} is not installed (scripts/test.sh installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that starts real processes or soaks is also ``slow``.

    ``python -m pytest -m "not slow"`` is then the quick unit run; the whole
    suite (scripts/test.sh, CI) runs everything.
    """
    for item in items:
        if item.get_closest_marker("e2e") or item.get_closest_marker("soak"):
            item.add_marker(pytest.mark.slow)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the expected exposition files instead of comparing")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def processes() -> Iterator[Processes]:
    """Exporter processes started by a test, all stopped when it ends."""
    with Processes() as group:
        yield group
