"""Generate the dashboards, the rules and the Helm chart's copies of them.

    python -m mixin           # (re)write dashboards/*.json, rules/*.yml and the chart's copies
    python -m mixin --check   # write nothing; list what differs and exit 1
    python -m mixin --deployment-label cluster --output-dir my-mixin/

Run from a clone of the repository. tests/artefacts/test_mixin.py fails when a committed
file is not what the mixin generates.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

from mixin.config import MixinConfig
from mixin.outputs import REPO_ROOT, drift, generated, write


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(prog="python -m mixin",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; list every generated file that is missing, "
                             "differs or is left over, and exit 1 if there is one")
    parser.add_argument("--deployment-label", default=MixinConfig.deployment_label,
                        metavar="LABEL",
                        help="the label that tells deployments apart, selected by a dashboard "
                             "variable of that name and kept in every query (default: "
                             "%(default)s; e.g. cluster)")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT, metavar="DIR",
                        help="where to write dashboards/ and rules/ (default: the repository, "
                             "where the Helm chart's copies are written too, and left-over "
                             "files of those folders removed)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", args.deployment_label) or \
            args.deployment_label in ("account", *MixinConfig.replica_labels):
        parser.error(f"--deployment-label: {args.deployment_label!r} is not a label name "
                     "that can tell deployments apart")
    return args


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) every generated file; 1 when --check finds drift."""
    args = parse_args(argv)
    cfg = dataclasses.replace(MixinConfig(), deployment_label=args.deployment_label)
    root: Path = args.output_dir
    # Only the repository's own folders are known to hold nothing but generated
    # files: elsewhere, a file the mixin does not generate may be the user's.
    in_repository = root.resolve() == REPO_ROOT
    files = generated(cfg, chart=in_repository)
    if args.check:
        problems = drift(root, files, owned=in_repository)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("not up to date; run: python -m mixin", file=sys.stderr)
        return 1 if problems else 0
    for change in write(root, files, owned=in_repository):
        print(change)
    return 0


if __name__ == "__main__":
    sys.exit(main())
