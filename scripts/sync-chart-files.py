#!/usr/bin/env python3
"""Copy the project's alert rules and dashboards into the Helm chart.

Helm can only read files inside the chart, so ``rules/*.yml`` and
``dashboards/*.json`` (the one source of truth) are copied byte for byte into
``helm/scenario-exporter/files/``; copies whose original is gone are removed.

    python3 scripts/sync-chart-files.py          # update the copies
    python3 scripts/sync-chart-files.py --check  # exit 1 and list drift, change nothing

``tests/test_helm.py`` runs the check, so a rule or dashboard edited without
running this script fails the suite.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART_FILES = REPO_ROOT / "helm" / "scenario-exporter" / "files"


@dataclass(frozen=True)
class CopySet:
    """Files matching *pattern* in *source* are carried in *target*."""

    source: Path
    target: Path
    pattern: str


COPY_SETS = (
    CopySet(REPO_ROOT / "rules", CHART_FILES / "rules", "*.yml"),
    CopySet(REPO_ROOT / "dashboards", CHART_FILES / "dashboards", "*.json"),
)


def drift(copy_set: CopySet) -> list[str]:
    """Describe every difference between the originals and the chart's copies."""
    problems = []
    originals = {p.name: p for p in copy_set.source.glob(copy_set.pattern)}
    copies = {p.name: p for p in copy_set.target.glob(copy_set.pattern)}
    for name in sorted(originals.keys() - copies.keys()):
        problems.append(f"{_rel(copy_set.target / name)} is missing")
    for name in sorted(copies.keys() - originals.keys()):
        problems.append(f"{_rel(copies[name])} has no original in {_rel(copy_set.source)}/")
    for name in sorted(originals.keys() & copies.keys()):
        if originals[name].read_bytes() != copies[name].read_bytes():
            problems.append(f"{_rel(copies[name])} differs from {_rel(originals[name])}")
    return problems


def sync(copy_set: CopySet) -> list[str]:
    """Make the copies equal to the originals; return what was changed."""
    changed = []
    copy_set.target.mkdir(parents=True, exist_ok=True)
    originals = {p.name: p for p in copy_set.source.glob(copy_set.pattern)}
    for stale in sorted(copy_set.target.glob(copy_set.pattern)):
        if stale.name not in originals:
            stale.unlink()
            changed.append(f"removed {_rel(stale)}")
    for name, original in sorted(originals.items()):
        target = copy_set.target / name
        content = original.read_bytes()
        if not target.exists() or target.read_bytes() != content:
            target.write_bytes(content)
            changed.append(f"copied {_rel(original)} -> {_rel(target)}")
    return changed


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="report drift and exit 1 instead of copying")
    args = parser.parse_args(argv)
    if args.check:
        problems = [p for s in COPY_SETS for p in drift(s)]
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python3 scripts/sync-chart-files.py", file=sys.stderr)
        return 1 if problems else 0
    for change in (c for s in COPY_SETS for c in sync(s)):
        print(change)
    return 0


if __name__ == "__main__":
    sys.exit(main())
