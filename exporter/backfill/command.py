"""``scenario-exporter backfill``: its own flags, validated into :class:`BackfillOptions`.

    scenario-exporter backfill --start=2026-08-01 --end=2026-11-01 --output=history.om \\
        --label=job=scenario-exporter
    promtool tsdb create-blocks-from openmetrics history.om /prometheus/data

The exporter's own flags (accounts, period, upstream) apply as they do to the
live exporter; see docs/backfill.md.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from exporter.core.durations import parse_duration
from exporter.core.errors import ConfigError
from exporter.metrics.counters import COUNTERS

DEFAULT_RETENTION = "120d"  # how far back GET /v1/usages serves data
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Labels of the exporter's series: a target label must not overwrite them.
EXPORTER_LABELS = frozenset({"account", "model_name", "is_api_key", "user_name", "email",
                             *(label for spec in COUNTERS for label in spec.labels)})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The backfill's own flags, next to the exporter's (which it reads the same way)."""
    group = parser.add_argument_group("backfill")
    group.add_argument("--start", metavar="YYYY-MM-DD", required=True,
                       help="first day (UTC); its whole period is written")
    group.add_argument("--end", metavar="YYYY-MM-DD", required=True,
                       help="day after the last one (exclusive); at most the start of the "
                            "current period")
    group.add_argument("--output", metavar="FILE", required=True,
                       help="OpenMetrics file to write, '-' for stdout")
    group.add_argument("--label", metavar="NAME=VALUE", action="append",
                       help="target label Prometheus adds at scrape time "
                            "(repeat: --label=job=scenario-exporter)")
    group.add_argument("--upstream.retention", dest="upstream.retention", metavar="DURATION",
                       help="how far back upstream keeps data; an older --start is refused "
                            f"(default {DEFAULT_RETENTION})")


@dataclass(frozen=True)
class BackfillOptions:
    """The backfill's own arguments, validated."""

    start: date
    end: date
    output: str
    labels: tuple[tuple[str, str], ...] = ()
    retention_seconds: float = 120 * 86400.0

    @classmethod
    def from_arguments(cls, values: dict[str, Any]) -> BackfillOptions:
        """From the parsed flags (by ``dest``); a bad one raises :class:`ConfigError`."""
        labels: dict[str, str] = {}
        for item in values.get("label") or ():
            name, sep, value = item.partition("=")
            if not sep or not _LABEL_NAME.match(name) or name.startswith("__"):
                raise ConfigError(f"--label: {item!r} is not NAME=VALUE with a label name "
                                  "such as job")
            if name in EXPORTER_LABELS or name in labels:
                raise ConfigError(f"--label: {name} is already a label of the series")
            labels[name] = value
        try:
            retention = parse_duration(values.get("upstream.retention", DEFAULT_RETENTION))
        except ValueError as exc:
            raise ConfigError(f"--upstream.retention: {exc}") from None
        output = str(values["output"])
        if not output:
            raise ConfigError("--output: must be a file name, or '-' for stdout")
        return cls(_date("--start", values["start"]), _date("--end", values["end"]), output,
                   tuple(sorted(labels.items())), retention)


def _date(flag: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a date such as 2026-08-01") from None
