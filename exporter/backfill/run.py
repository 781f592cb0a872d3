"""``scenario-exporter backfill``: past periods as an OpenMetrics file for promtool.

    scenario-exporter backfill --start=2026-08-01 --end=2026-11-01 --output=history.om \\
        --label=job=scenario-exporter
    promtool tsdb create-blocks-from openmetrics history.om /prometheus/data

One upstream request per account and period (split on UTC days only when the
gateway says the answer is too large), with the exporter's back-off,
``Retry-After`` and hourly cap. Each finished period is kept as a valid
OpenMetrics file of its own in ``FILE.parts/``: a run that fails or is
interrupted says which periods are missing, and the same command run again
fetches only those. ``FILE`` itself appears only when every period is there.

The series are built by :mod:`exporter.backfill.replay`; see docs/backfill.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import httpx

from exporter.backfill.fetch import PeriodFetcher, describe
from exporter.backfill.output import PartStore, merge_parts
from exporter.backfill.replay import SeriesWriter, render
from exporter.config.settings import Settings
from exporter.core.account import AccountConfig
from exporter.core.durations import parse_duration
from exporter.core.errors import ConfigError, FailureReason, InvalidResponse, UpstreamError
from exporter.core.period import (
    PeriodWindow,
    monotonic_clock,
    next_period_start,
    period_start,
    wall_clock,
)
from exporter.metrics.business import COUNTERS, CollectorOptions
from exporter.upstream.client import UsageClient

log = logging.getLogger("exporter.backfill")

ARGUMENT_PREFIX = "backfill."
DEFAULT_RETENTION = "120d"  # how far back GET /v1/usages serves data
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Labels of the exporter's series: a target label must not overwrite them.
EXPORTER_LABELS = frozenset({"account", "model_name", "is_api_key", "user_name", "email",
                             *(spec.label for spec in COUNTERS)})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The backfill's own flags, next to the exporter's (which it reads the same way)."""
    group = parser.add_argument_group("backfill")
    group.add_argument("--start", dest=ARGUMENT_PREFIX + "start", metavar="YYYY-MM-DD",
                       required=True, help="first day (UTC); its whole period is written")
    group.add_argument("--end", dest=ARGUMENT_PREFIX + "end", metavar="YYYY-MM-DD",
                       required=True, help="day after the last one (exclusive); at most the "
                                           "start of the current period")
    group.add_argument("--output", dest=ARGUMENT_PREFIX + "output", metavar="FILE",
                       required=True, help="OpenMetrics file to write, '-' for stdout")
    group.add_argument("--label", dest=ARGUMENT_PREFIX + "label", metavar="NAME=VALUE",
                       action="append", help="target label Prometheus adds at scrape time "
                                             "(repeat: --label=job=scenario-exporter)")
    group.add_argument("--upstream.retention", dest=ARGUMENT_PREFIX + "retention",
                       metavar="DURATION", help="how far back upstream keeps data; an older "
                                                f"--start is refused (default {DEFAULT_RETENTION})")


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
        """From the parsed ``backfill.*`` arguments; a bad one raises :class:`ConfigError`."""
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
            retention = parse_duration(values.get("retention", DEFAULT_RETENTION))
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


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def plan_periods(settings: Settings, options: BackfillOptions, now: datetime) -> list[PeriodWindow]:
    """The whole past periods that cover ``[start, end)``; bad dates raise ConfigError."""
    if options.start >= options.end:
        raise ConfigError(f"--start: {options.start} is not before --end {options.end} "
                          "(--end is exclusive)")
    kind, anchor = settings.period, settings.period_anchor_day
    current = period_start(now, kind, anchor)
    end = _midnight(options.end)
    if end > current:
        raise ConfigError(f"--end: {options.end} reaches into the current period, which began "
                          f"{current:%Y-%m-%d} and is the live exporter's; use "
                          f"--end={current:%Y-%m-%d}")
    first = period_start(_midnight(options.start), kind, anchor)
    earliest = now - timedelta(seconds=options.retention_seconds)
    if first < earliest:
        keeps = period_start(earliest, kind, anchor)
        if keeps < earliest:
            keeps = next_period_start(keeps, kind)
        raise ConfigError(f"--start: the period of {options.start} begins {first:%Y-%m-%d}, "
                          f"further back than upstream keeps data (since {earliest:%Y-%m-%d}, "
                          f"--upstream.retention); the first whole period it keeps begins "
                          f"{keeps:%Y-%m-%d}")
    periods = []
    while first < end:
        after = next_period_start(first, kind)
        periods.append(PeriodWindow(first, after))
        first = after
    return periods


class Progress:
    """A progress bar on a terminal, one log line per period otherwise."""

    def __init__(self, total: int, stream: TextIO, clock: Callable[[], float]) -> None:
        self._total = total
        self._done = 0
        self._clock = clock
        self._started = clock()
        self._bar: Any = None
        if stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="period", desc="backfill", file=stream,
                             dynamic_ncols=True)

    @contextmanager
    def logging_above(self) -> Iterator[None]:
        """Log lines printed above the bar instead of through it."""
        if self._bar is None:
            yield
            return
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():
            yield

    def period_done(self, account: str, window: PeriodWindow, requests: int,
                    kept: bool) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(f"{account} {describe(window)} requests={requests}")
            self._bar.update(1)
            return
        elapsed = self._clock() - self._started
        eta = elapsed / self._done * (self._total - self._done)
        log.info("period kept from an earlier run" if kept else "period written",
                 extra={"fields": {"account": account, "period": describe(window),
                                   "done": f"{self._done}/{self._total}",
                                   "requests": requests, "eta_seconds": round(eta)}})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def fingerprint(settings: Settings, options: BackfillOptions) -> str:
    """What shapes a period's file: parts written under other settings are not reused."""
    shape = {
        "format": 1, "api_url": settings.api_url, "period": settings.period,
        "anchor_day": settings.period_anchor_day, "labels": options.labels,
        "max_models": settings.max_models, "max_users": settings.max_users,
        "user_identity": settings.user_identity,
        "accounts": {a.name: [a.project_ids, a.budget_creative_units]
                     for a in settings.accounts},
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


def run_backfill(settings: Settings, options: BackfillOptions,
                 transport: httpx.BaseTransport | None, *,
                 wall: Callable[[], float] = wall_clock,
                 clock: Callable[[], float] = monotonic_clock,
                 sleep: Callable[[float], None] = time.sleep,
                 stdout: BinaryIO | None = None, stderr: TextIO | None = None,
                 rng: random.Random | None = None) -> int:
    """Run the command: 0 when every period was written, 1 when some are missing, 2 on
    bad input (one line on *stderr*, nothing written)."""
    stderr = stderr or sys.stderr
    try:
        periods = plan_periods(settings, options, datetime.fromtimestamp(wall(), timezone.utc))
        parts_dir, temporary = _parts_directory(options.output)
        store = PartStore(parts_dir, fingerprint(settings, options))
    except ConfigError as exc:
        stderr.write(f"scenario-exporter: {exc}\n")
        return 2
    started = clock()
    requests = RequestCounter()
    client = UsageClient(settings.api_url, settings.upstream_timeout, transport=transport,
                         record=requests, monotonic=clock, wall=wall,
                         ca_file=settings.upstream_ca_file)
    fetcher = PeriodFetcher(client, settings.max_requests_per_hour, sleep=sleep, clock=clock,
                            rng=rng or random.Random())
    log.info("backfill", extra={"fields": {
        "periods": len(periods), "from": f"{periods[0].start:%Y-%m-%d}",
        "to": f"{periods[-1].end:%Y-%m-%d}", "period": settings.period,
        "accounts": ",".join(a.name for a in settings.accounts), "parts": str(parts_dir)}})
    progress = Progress(len(periods) * len(settings.accounts), stderr, clock)
    resume = ("run the same command again: the periods already written are kept in "
              f"{parts_dir} and not fetched again" if not temporary else
              "--output=- cannot resume: give a file to keep finished periods")
    try:
        with progress.logging_above():
            missing = _write_periods(settings, options, periods, store, fetcher,
                                     lambda a, w, kept: progress.period_done(
                                         a, w, requests.total, kept))
    except KeyboardInterrupt:
        log.error("backfill interrupted", extra={"fields": {"resume": resume}})
        if temporary:
            store.remove()
        return 130
    finally:
        progress.close()
        client.close()
    if missing:
        for line in missing:
            log.error("period missing", extra={"fields": {"missing": line}})
        log.error("backfill incomplete", extra={"fields": {
            "missing_periods": len(missing), "resume": resume}})
        if temporary:
            store.remove()
        return 1
    summary = merge_parts(store.paths(), options.output, stdout or sys.stdout.buffer)
    store.remove()
    log.info("backfill complete", extra={"fields": {
        "output": options.output, "periods": len(periods), "accounts": len(settings.accounts),
        "series": summary.series, "samples": summary.samples, "bytes": summary.bytes,
        "first_sample": summary.first, "last_sample": summary.last,
        "requests": requests.total, "duration_seconds": round(clock() - started, 3),
        "next": f"promtool tsdb create-blocks-from openmetrics {options.output} DATA_DIR"}})
    return 0


class RequestCounter:
    """Counts upstream HTTP calls (the client's request recorder)."""

    def __init__(self) -> None:
        self.total = 0

    def __call__(self, account: str, code: str, seconds: float, size: int | None) -> None:
        self.total += 1


def _write_periods(settings: Settings, options: BackfillOptions, periods: list[PeriodWindow],
                   store: PartStore, fetcher: PeriodFetcher,
                   done: Callable[[str, PeriodWindow, bool], None]) -> list[str]:
    """Fetch and keep every period not kept yet; the missing ones, described."""
    collector_options = CollectorOptions(max_stale=float("inf"), period=settings.period,
                                         user_identity=settings.user_identity)
    missing: list[str] = []
    for account in settings.accounts:
        writer = SeriesWriter(account, collector_options, dict(options.labels),
                              settings.max_models, settings.max_users)
        refused: UpstreamError | None = None  # credentials refused: no more calls
        for window in periods:
            kept = store.has(account.name, window)
            if not kept:
                if refused is not None:
                    missing.append(_missing(account, window, refused))
                    continue
                try:
                    usage = fetcher.fetch(account, window)
                    families = writer.period_families(usage)
                except InvalidResponse as exc:  # sums beyond the range of floats
                    missing.append(_missing(account, window, UpstreamError(
                        FailureReason.INVALID_RESPONSE, f"invalid response: {exc}")))
                    continue
                except UpstreamError as exc:
                    refused = exc if exc.reason is FailureReason.AUTH else None
                    missing.append(_missing(account, window, exc))
                    continue
                store.put(account.name, window, render(families))
            done(account.name, window, kept)
    return missing


def _missing(account: AccountConfig, window: PeriodWindow, exc: UpstreamError) -> str:
    return f"{account.name} {describe(window)} ({exc.reason}: {exc})"


def _parts_directory(output: str) -> tuple[Path, bool]:
    """Where finished periods wait; checks that *output* can be written at all."""
    if output == "-":
        return Path(tempfile.mkdtemp(prefix="scenario-backfill-")), True
    path = Path(output)
    if path.is_dir():
        raise ConfigError(f"--output: {output} is a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent or Path("."), prefix=f".{path.name}."):
            pass
    except OSError as exc:
        raise ConfigError(f"--output: cannot write {output}: {exc.strerror or exc}") from None
    return path.with_name(path.name + ".parts"), False


def run_backfill_command(settings: Settings, arguments: dict[str, Any],
                         transport: httpx.BaseTransport | None) -> int:
    """The CLI's entry: *arguments* are the parsed ``backfill.*`` flags."""
    try:
        options = BackfillOptions.from_arguments(arguments)
    except ConfigError as exc:
        sys.stderr.write(f"scenario-exporter: {exc}\n")
        return 2
    return run_backfill(settings, options, transport)


def backfill_arguments(namespace: dict[str, Any]) -> dict[str, Any]:
    """Take the ``backfill.*`` arguments out of a parsed namespace."""
    own = [key for key in namespace if key.startswith(ARGUMENT_PREFIX)]
    return {key[len(ARGUMENT_PREFIX):]: namespace.pop(key) for key in own}
