"""Shared fixtures and markers of the test suite.

The suite is laid out by layer (docs/architecture.md): ``unit/`` one module at a
time, ``component/`` several modules in one process, ``process/`` real child
processes (the exporter, Prometheus), ``packaging/`` the Helm chart and the
image, ``artefacts/`` the dashboards, rules and docs. Everything under
``process/`` and ``packaging/`` is ``slow``, so ``python -m pytest -m "not slow"``
is the quick unit run; CI runs everything. Helpers shared with the benchmark are
in ``testkit/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.processes import Processes
from testkit.prometheus import MAJORS, find_build
from testkit.repo import REPO_ROOT

SLOW_DIRECTORIES = ("process", "packaging")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under a slow directory is ``slow`` (and the soak, the fuzz,
    promtool's month-long rule tests and the component tests that take seconds say
    so themselves)."""
    tests = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(tests).parts
        if parts and parts[0] in SLOW_DIRECTORIES:
            item.add_marker(pytest.mark.slow)


def pytest_report_header() -> list[str]:
    """The Prometheus releases the suite runs its rules, dashboards and end-to-end
    checks on, at the top of its output."""
    found = []
    for major in MAJORS:
        build = find_build(major)
        where = "" if build is None else str(build.bin).replace(str(REPO_ROOT) + "/", "")
        found.append(f"{major}.x missing" if build is None else f"{build.version} ({where})")
    return ["prometheus: " + ", ".join(found)]


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
