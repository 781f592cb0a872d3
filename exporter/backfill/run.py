"""Running a backfill: past periods as an OpenMetrics file for promtool.

One upstream request per account and period (split on UTC days only when the
gateway says the answer is too large), with the exporter's back-off,
``Retry-After`` and hourly cap. Each finished period is kept as a valid
OpenMetrics file of its own in ``FILE.parts/``: a run that fails or is
interrupted says which periods are missing, and the same command run again
fetches only those. ``FILE`` itself appears only when every period is there.

The series are built by :mod:`exporter.backfill.replay`; see docs/backfill.md.
"""

from __future__ import annotations

import logging
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import httpx

from exporter.backfill.command import BackfillOptions
from exporter.backfill.fetch import PeriodFetcher, describe
from exporter.backfill.output import PartStore, fingerprint, merge_parts
from exporter.backfill.plan import calendar_kind, plan_periods
from exporter.backfill.replay import SeriesWriter, render
from exporter.config.settings import Settings
from exporter.core.account import AccountConfig
from exporter.core.billing import AccountPeriod
from exporter.core.errors import ConfigError, FailureReason, InvalidResponse, UpstreamError
from exporter.core.period import PeriodWindow, monotonic_clock, wall_clock
from exporter.metrics.business import CollectorOptions
from exporter.upstream.client import UsageClient
from exporter.upstream.team import TeamReader, read_billing_period

log = logging.getLogger("exporter.backfill")


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


def run_backfill(settings: Settings, options: BackfillOptions,
                 transport: httpx.BaseTransport | None, *,
                 wall: Callable[[], float] = wall_clock,
                 clock: Callable[[], float] = monotonic_clock,
                 sleep: Callable[[float], None] = time.sleep,
                 stdout: BinaryIO | None = None, stderr: TextIO | None = None,
                 rng: random.Random | None = None) -> bool:
    """Write every period not written yet; True when all are there (the file is written).

    Bad input raises :class:`ConfigError` before anything is fetched; an
    interruption leaves the finished periods for the next run and is re-raised.
    Progress goes to *stderr* (a bar on a terminal).
    """
    stderr = stderr or sys.stderr
    now = datetime.fromtimestamp(wall(), timezone.utc)
    calendar = settings.period not in ("billing", "auto")
    if calendar or options.start >= options.end:  # bad dates fail before any call
        plan_periods(settings, options, now)
    parts_dir, temporary = _parts_directory(options.output)  # before any call
    started = clock()
    requests = RequestCounter()
    client = UsageClient(settings.api_url, settings.upstream_timeout, transport=transport,
                         record=requests, monotonic=clock, wall=wall,
                         ca_file=settings.upstream_ca_file)
    fetcher = PeriodFetcher(client, settings.max_requests_per_hour, sleep=sleep, clock=clock,
                            rng=rng or random.Random())
    try:
        plans = {account.name: _account_periods(settings, options, now, client, account)
                 for account in settings.accounts}
    except BaseException:
        client.close()
        if temporary:
            shutil.rmtree(parts_dir, ignore_errors=True)
        raise
    periods = plans[settings.accounts[0].name]
    store = PartStore(parts_dir, fingerprint(settings, options))
    log.info("backfill", extra={"fields": {
        "periods": len(periods), "from": f"{periods[0].start:%Y-%m-%d}",
        "to": f"{periods[-1].end:%Y-%m-%d}", "period": settings.period,
        "accounts": ",".join(a.name for a in settings.accounts), "parts": str(parts_dir)}})
    progress = Progress(sum(len(p) for p in plans.values()), stderr, clock)
    resume = ("run the same command again: the periods already written are kept in "
              f"{parts_dir} and not fetched again" if not temporary else
              "--output=- cannot resume: give a file to keep finished periods")
    try:
        with progress.logging_above():
            missing = _write_periods(settings, options, plans, store, fetcher,
                                     lambda a, w, kept: progress.period_done(
                                         a, w, requests.total, kept))
    except KeyboardInterrupt:
        log.error("backfill interrupted", extra={"fields": {"resume": resume}})
        if temporary:
            store.remove()
        raise
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
        return False
    summary = merge_parts(store.paths(), options.output, stdout or sys.stdout.buffer)
    store.remove()
    log.info("backfill complete", extra={"fields": {
        "output": options.output, "periods": len(periods), "accounts": len(settings.accounts),
        "series": summary.series, "samples": summary.samples, "bytes": summary.bytes,
        "first_sample": summary.first, "last_sample": summary.last,
        "requests": requests.total, "duration_seconds": round(clock() - started, 3),
        "next": f"promtool tsdb create-blocks-from openmetrics {options.output} DATA_DIR"}})
    return True


class RequestCounter:
    """Counts upstream HTTP calls (the client's request recorder)."""

    def __init__(self) -> None:
        self.total = 0

    def __call__(self, account: str, code: str, seconds: float, size: int | None) -> None:
        self.total += 1


def _account_periods(settings: Settings, options: BackfillOptions, now: datetime,
                     client: UsageClient, account: AccountConfig) -> list[PeriodWindow]:
    """*account*'s periods: with ``--period=billing`` or ``auto``, monthly from its team's
    current billing period (read from Scenario, and said so), else the calendar's."""
    if settings.period not in ("billing", "auto"):
        return plan_periods(settings, options, now)
    limits = read_billing_period(TeamReader(client, account, settings.max_users),
                                 account.team_id)
    period = AccountPeriod(settings.period, settings.period_anchor_day)
    if limits is not None:
        period.learn(*limits, now.timestamp())
    period.settle()
    current = period.period(now)
    assert current is not None  # settled
    log.info("backfill periods", extra={"fields": {
        "account": account.name, "periods": period.describe(now),
        "steps": "back by calendar months, same day and time" if current.source == "billing"
        else f"calendar {calendar_kind(settings)}s"}})
    billing_start = current.start if current.source == "billing" else None
    return plan_periods(settings, options, now, billing_start)


def _write_periods(settings: Settings, options: BackfillOptions,
                   plans: dict[str, list[PeriodWindow]],
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
        for window in plans[account.name]:
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


def run(settings: Settings, arguments: dict[str, Any],
        transport: httpx.BaseTransport | None) -> bool:
    """The command line's entry: *arguments* are the parsed flags, by ``dest``."""
    return run_backfill(settings, BackfillOptions.from_arguments(arguments), transport)
