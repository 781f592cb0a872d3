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

The series are built by :mod:`exporter.history`; see docs/backfill.md.
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
from typing import Any, TextIO

import httpx

from exporter.backfill_output import PartStore, merge_parts
from exporter.cache import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, RequestCap
from exporter.client import RequestPermit, ResponseTooLarge, UpstreamError, UsageClient
from exporter.collector import COUNTERS, CollectorOptions
from exporter.config import AccountConfig, ConfigError, Settings, parse_duration
from exporter.history import PeriodUsage, SeriesWriter, join_pieces, render, split_into_buckets
from exporter.period import (
    PeriodWindow,
    monotonic_clock,
    next_period_start,
    period_start,
    wall_clock,
)

log = logging.getLogger("exporter.backfill")

ARGUMENT_PREFIX = "backfill."
DEFAULT_RETENTION = "120d"  # how far back GET /v1/usages serves data
MAX_ATTEMPTS = 5  # per period, for failures that may pass (429, 5xx, timeouts)
RETRIABLE = frozenset({"rate_limited", "server_error", "timeout", "connection_error"})
CAP_POLL_SECONDS = 30.0
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


def split_on_utc_days(window: PeriodWindow) -> tuple[PeriodWindow, PeriodWindow] | None:
    """Two pieces cut on the UTC midnight nearest the middle; None for a day or less.

    Upstream's buckets are days for long windows: a cut inside one would give
    both pieces a partial bucket, which upstream rounds on its own.
    Kept apart from the live exporter's splitting on purpose (see docs/backfill.md).
    """
    middle = window.start + (window.end - window.start) / 2
    floor = middle.replace(hour=0, minute=0, second=0, microsecond=0)
    for cut in sorted((floor, floor + timedelta(days=1)), key=lambda c: abs(c - middle)):
        if window.start < cut < window.end:
            return PeriodWindow(window.start, cut), PeriodWindow(cut, window.end)
    return None


class PeriodFetcher:
    """One period of one account from upstream, as politely as the exporter asks."""

    def __init__(self, client: UsageClient, max_requests_per_hour: int, *,
                 sleep: Callable[[float], None], clock: Callable[[], float],
                 rng: random.Random) -> None:
        self._client = client
        self._limit = max_requests_per_hour
        self._caps: dict[str, RequestCap] = {}
        self._sleep = sleep
        self._clock = clock
        self._rng = rng

    def fetch(self, account: AccountConfig, window: PeriodWindow) -> PeriodUsage:
        """The period's buckets; retries what may pass, raises :class:`UpstreamError`."""
        failures = 0
        while True:
            try:
                return join_pieces(window, self._pieces(account, window))
            except UpstreamError as exc:
                failures += 1
                if exc.reason not in RETRIABLE or failures >= MAX_ATTEMPTS:
                    raise
                # The exporter's back-off: doubling, jittered, at least Retry-After.
                delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (failures - 1))
                delay *= self._rng.uniform(0.5, 1.0)
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                log.warning("retrying", extra={"fields": {
                    "account": account.name, "period": _describe(window),
                    "reason": exc.reason, "error": str(exc), "attempt": failures,
                    "retry_in_seconds": round(delay, 1)}})
                self._sleep(delay)

    def _pieces(self, account: AccountConfig, window: PeriodWindow) -> list[PeriodUsage]:
        try:
            response, _ = self._client.fetch_response(account, window, self._permit(account))
        except ResponseTooLarge:
            halves = split_on_utc_days(window)
            if halves is None:
                raise UpstreamError("too_large", f"upstream says the answer for one day "
                                                 f"({_describe(window)}) is too large") from None
            log.info("splitting period", extra={"fields": {
                "account": account.name, "window": _describe(window),
                "pieces": f"{_describe(halves[0])} + {_describe(halves[1])}"}})
            return [*self._pieces(account, halves[0]), *self._pieces(account, halves[1])]
        return [split_into_buckets(response, window)]

    def _permit(self, account: AccountConfig) -> RequestPermit:
        """The hourly cap: a batch job waits for room where the exporter would skip."""
        cap = self._caps.setdefault(account.name, RequestCap(self._limit, self._clock))

        def permit() -> bool:
            while not cap.try_acquire():
                log.info("hourly request cap reached, waiting", extra={"fields": {
                    "account": account.name, "cap": self._limit}})
                self._sleep(CAP_POLL_SECONDS)
            return True

        return permit


def _describe(window: PeriodWindow) -> str:
    return f"{window.start:%Y-%m-%d}/{window.end:%Y-%m-%d}"


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
            self._bar.set_postfix_str(f"{account} {_describe(window)} requests={requests}")
            self._bar.update(1)
            return
        elapsed = self._clock() - self._started
        eta = elapsed / self._done * (self._total - self._done)
        log.info("period kept from an earlier run" if kept else "period written",
                 extra={"fields": {"account": account, "period": _describe(window),
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
                 stdout: Any = None, stderr: TextIO | None = None,
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
    requests = 0

    def count(account: str, code: str, seconds: float, size: int | None) -> None:
        nonlocal requests
        requests += 1

    client = UsageClient(settings.api_url, settings.upstream_timeout, transport=transport,
                         record=count, monotonic=clock, wall=wall)
    fetcher = PeriodFetcher(client, settings.max_requests_per_hour, sleep=sleep, clock=clock,
                            rng=rng or random.Random())
    collector_options = CollectorOptions(max_stale=float("inf"),
                                         user_identity=settings.user_identity)
    log.info("backfill", extra={"fields": {
        "periods": len(periods), "from": f"{periods[0].start:%Y-%m-%d}",
        "to": f"{periods[-1].end:%Y-%m-%d}", "period": settings.period,
        "accounts": ",".join(a.name for a in settings.accounts), "parts": str(parts_dir)}})
    missing: list[str] = []
    progress = Progress(len(periods) * len(settings.accounts), stderr, clock)
    try:
        with progress.logging_above():
            for account in settings.accounts:
                writer = SeriesWriter(account, collector_options, dict(options.labels),
                                      settings.max_models, settings.max_users)
                refused: UpstreamError | None = None
                for window in periods:
                    kept = store.has(account.name, window)
                    if not kept and refused is None:
                        try:
                            usage = fetcher.fetch(account, window)
                        except UpstreamError as exc:
                            refused = exc if exc.reason == "auth" else None
                            missing.append(_missing(account, window, exc))
                            continue
                        store.put(account.name, window, render(writer.period_families(usage)))
                    elif refused is not None:
                        missing.append(_missing(account, window, refused))
                        continue
                    progress.period_done(account.name, window, requests, kept)
    finally:
        progress.close()
        client.close()
    if missing:
        for line in missing:
            log.error("period missing", extra={"fields": {"missing": line}})
        hint = ("run the same command again: the periods already written are kept in "
                f"{parts_dir} and not fetched again" if not temporary else
                "--output=- cannot resume: give a file to keep finished periods")
        log.error("backfill incomplete", extra={"fields": {
            "missing_periods": len(missing), "resume": hint}})
        if temporary:
            store.remove()
        return 1
    summary = merge_parts(store.paths(), options.output, stdout or sys.stdout.buffer)
    store.remove()
    log.info("backfill complete", extra={"fields": {
        "output": options.output, "periods": len(periods), "accounts": len(settings.accounts),
        "series": summary.series, "samples": summary.samples, "bytes": summary.bytes,
        "first_sample": summary.first, "last_sample": summary.last, "requests": requests,
        "duration_seconds": round(clock() - started, 3),
        "next": f"promtool tsdb create-blocks-from openmetrics {options.output} DATA_DIR"}})
    return 0


def _missing(account: AccountConfig, window: PeriodWindow, exc: UpstreamError) -> str:
    return f"{account.name} {_describe(window)} ({exc.reason}: {exc})"


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
