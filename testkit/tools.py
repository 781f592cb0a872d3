"""The programs the tests run (promtool, prometheus, helm, ...): found, or skipped with
the reason on a laptop and failed in CI, which must prove everything."""

from __future__ import annotations

import shutil

import pytest

from testkit.repo import IN_CI, REPO_ROOT


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
