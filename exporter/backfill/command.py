"""``scenario-exporter backfill``: its own flags, validated into :class:`BackfillOptions`.

    scenario-exporter backfill --output=history.om --label=job=scenario-exporter
    promtool tsdb create-blocks-from openmetrics history.om /prometheus/data

    scenario-exporter backfill --remote-write.url=http://prometheus:9090/api/v1/write \\
        --label=job=scenario-exporter

Without ``--start``, the ``--periods`` (12) whole periods before the current one.
The exporter's own flags (accounts, period, upstream) apply as they do to the
live exporter; see docs/backfill.md.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from exporter.backfill.remote_write import RemoteWriteOptions
from exporter.backfill.remote_write import add_arguments as add_remote_write_arguments
from exporter.core.errors import ConfigError
from exporter.metrics.counters import COUNTERS

DEFAULT_PERIODS = 12
OUTPUT_FORMATS = ("openmetrics", "focus")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Labels of the exporter's series: a target label must not overwrite them.
EXPORTER_LABELS = frozenset({"account", "model_name", "is_api_key", "user_name", "email",
                             *(label for spec in COUNTERS for label in spec.labels)})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The backfill's own flags, next to the exporter's (which it reads the same way)."""
    group = parser.add_argument_group("backfill")
    group.add_argument("--periods", metavar="N",
                       help=f"how many whole periods before the current one, when --start is "
                            f"not given (default {DEFAULT_PERIODS}: a year of monthly periods)")
    group.add_argument("--start", metavar="YYYY-MM-DD",
                       help="first day (UTC); its whole period is written (default: --periods "
                            "periods before --end)")
    group.add_argument("--end", metavar="YYYY-MM-DD",
                       help="day after the last one (exclusive); at most the start of the "
                            "current period, which is the default")
    group.add_argument("--output", metavar="FILE",
                       help="file to write, '-' for stdout (needed unless --remote-write.url "
                            "is given)")
    group.add_argument("--output-format", dest="output_format", choices=OUTPUT_FORMATS,
                       help="openmetrics (default): for promtool tsdb create-blocks-from; "
                            "focus: FOCUS 1.2 cost and usage rows as CSV, for FinOps tools")
    group.add_argument("--label", metavar="NAME=VALUE", action="append",
                       help="target label Prometheus adds at scrape time "
                            "(repeat: --label=job=scenario-exporter)")
    add_remote_write_arguments(parser.add_argument_group("backfill: remote write"))


@dataclass(frozen=True)
class BackfillOptions:
    """The backfill's own arguments, validated."""

    start: date | None
    end: date | None
    output: str | None
    labels: tuple[tuple[str, str], ...] = ()
    periods: int = DEFAULT_PERIODS
    output_format: Literal["openmetrics", "focus"] = "openmetrics"
    remote_write: RemoteWriteOptions | None = None

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
        start = _date("--start", values.get("start"))
        end = _date("--end", values.get("end"))
        periods = _periods(values.get("periods"), start)
        remote_write = RemoteWriteOptions.from_arguments(values)
        output = values.get("output")
        output_format: Literal["openmetrics", "focus"] = \
            "focus" if values.get("output_format") == "focus" else "openmetrics"
        if output is None and remote_write is None:
            raise ConfigError("--output: give a file to write ('-' for stdout), "
                              "--remote-write.url, or both")
        if output == "":
            raise ConfigError("--output: must be a file name, or '-' for stdout")
        if output is None and values.get("output_format"):
            raise ConfigError(f"--output-format: {values['output_format']} needs --output")
        return cls(start, end, output, tuple(sorted(labels.items())), periods,
                   output_format, remote_write)


def secrets(values: dict[str, Any]) -> set[str]:
    """The remote-write token and password, for the log redactor (bad flags raise
    :class:`ConfigError`, as they would when the run starts)."""
    remote_write = RemoteWriteOptions.from_arguments(values)
    return set() if remote_write is None else remote_write.secrets()


def _periods(text: Any, start: date | None) -> int:
    if text is None:
        return DEFAULT_PERIODS
    if start is not None:
        raise ConfigError("--periods: give --periods or --start, not both")
    try:
        periods = int(text)
    except ValueError:
        raise ConfigError(f"--periods: {text!r} is not a whole number such as 12") from None
    if periods < 1:
        raise ConfigError(f"--periods: {periods} is not at least 1")
    return periods


def _date(flag: str, text: Any) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a date such as 2026-08-01") from None
