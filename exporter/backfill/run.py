"""Running a backfill: past periods as OpenMetrics for promtool, pushed by remote write,
or as FOCUS rows.

One upstream request per account and period (split on UTC days only when the
gateway says the answer is too large), with the exporter's back-off,
``Retry-After`` and hourly cap. Every period is reported by name: written, kept
from an earlier run, empty upstream (no data at all: nothing to write), or
missing with the reason (an upstream error, a refused push); the run goes on
with the next period, and the summary and the exit code say how many were
written. For the OpenMetrics file, each finished period is kept as a file of
its own in ``FILE.parts/`` until every period is there: the same command run
again fetches only the missing ones.

The series are built by :mod:`exporter.backfill.replay`, delivered by
:mod:`exporter.backfill.sinks`; see docs/backfill.md.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, BinaryIO, TextIO

import httpx

from exporter.backfill.command import BackfillOptions
from exporter.backfill.fetch import PeriodFetcher, describe
from exporter.backfill.plan import calendar_kind, plan_periods
from exporter.backfill.remote_write import RemoteWriteError, RemoteWriter
from exporter.backfill.replay import SeriesWriter
from exporter.backfill.sinks import FocusSink, OpenMetricsSink, RemoteWriteSink, Sink
from exporter.config.settings import Settings
from exporter.core.account import AccountConfig
from exporter.core.billing import AccountPeriod
from exporter.core.errors import FailureReason, InvalidResponse, UpstreamError
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
                    status: str) -> None:
        """One more period done: ``written``, ``kept`` (from an earlier run) or ``empty``
        (upstream has no data for it, which is logged where it is found)."""
        self._done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(f"{account} {describe(window)} requests={requests}")
            self._bar.update(1)
            return
        if status == "empty":
            return
        elapsed = self._clock() - self._started
        eta = elapsed / self._done * (self._total - self._done)
        log.info("period kept from an earlier run" if status == "kept" else "period written",
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
                 rng: random.Random | None = None,
                 push_transport: httpx.BaseTransport | None = None) -> bool:
    """Write every period not written yet; True when none is missing.

    Bad input raises :class:`ConfigError` before anything is fetched; an
    interruption leaves the finished periods for the next run and is re-raised.
    Progress goes to *stderr* (a bar on a terminal). *push_transport*: the
    remote-write server's, for tests.
    """
    stderr = stderr or sys.stderr
    rng = rng or random.Random()
    now = datetime.fromtimestamp(wall(), timezone.utc)
    if settings.period not in ("billing", "auto") or (
            options.start is not None and options.end is not None
            and options.start >= options.end):
        plan_periods(settings, options, now)  # bad dates fail before any call
    sinks = _sinks(settings, options, stdout, push_transport, sleep, rng)  # before any call
    started = clock()
    requests = RequestCounter()
    client = UsageClient(settings.api_url, settings.upstream_timeout, transport=transport,
                         record=requests, monotonic=clock, wall=wall,
                         ca_file=settings.upstream_ca_file)
    fetcher = PeriodFetcher(client, settings.max_requests_per_hour, sleep=sleep, clock=clock,
                            rng=rng)
    try:
        plans = {account.name: _account_plan(settings, options, now, client, account,
                                             any(isinstance(s, FocusSink) for s in sinks))
                 for account in settings.accounts}
    except BaseException:
        client.close()
        for sink in sinks:
            sink.abort()
        raise
    first = min(p.periods[0].start for p in plans.values())
    last = max(p.periods[-1].end for p in plans.values())
    log.info("backfill", extra={"fields": {
        "periods": max(len(p.periods) for p in plans.values()), "from": f"{first:%Y-%m-%d}",
        "to": f"{last:%Y-%m-%d}", "period": settings.period,
        "accounts": ",".join(a.name for a in settings.accounts),
        "to_remote_write": options.remote_write is not None,
        "output": options.output or ""}})
    progress = Progress(sum(len(p.periods) for p in plans.values()), stderr, clock)
    files = [s for s in sinks if isinstance(s, OpenMetricsSink)]
    resume = files[0].resume_hint if files else "run the same command again"
    try:
        with progress.logging_above():
            outcome = _write_periods(settings, options, plans, sinks, fetcher,
                                     lambda a, w, status: progress.period_done(
                                         a, w, requests.total, status))
    except KeyboardInterrupt:
        log.error("backfill interrupted", extra={"fields": {"resume": resume}})
        for sink in sinks:
            sink.abort()
        raise
    finally:
        progress.close()
        client.close()
    complete = not outcome.missing
    fields: dict[str, Any] = {}
    for sink in sinks:
        fields.update(sink.finish(complete))
    summary = {"periods": outcome.total, "written": outcome.written, "kept": outcome.kept,
               "empty_upstream": outcome.empty, "missing": len(outcome.missing),
               "accounts": len(settings.accounts), **fields, "requests": requests.total,
               "duration_seconds": round(clock() - started, 3)}
    if complete:
        log.info("backfill complete", extra={"fields": summary})
    else:
        log.error("backfill incomplete", extra={"fields": {**summary, "resume": resume}})
    return complete


def _sinks(settings: Settings, options: BackfillOptions, stdout: BinaryIO | None,
           push_transport: httpx.BaseTransport | None, sleep: Callable[[float], None],
           rng: random.Random) -> list[Sink]:
    """The run's destinations; an output that cannot be written is refused here."""
    sinks: list[Sink] = []
    if options.output is not None:
        if options.output_format == "focus":
            sinks.append(FocusSink(options.output, stdout))
        else:
            sinks.append(OpenMetricsSink(settings, options, options.output, stdout))
    if options.remote_write is not None:
        sinks.append(RemoteWriteSink(RemoteWriter(options.remote_write,
                                                  transport=push_transport, sleep=sleep,
                                                  rng=rng)))
    return sinks


class RequestCounter:
    """Counts upstream HTTP calls (the client's request recorder)."""

    def __init__(self) -> None:
        self.total = 0

    def __call__(self, account: str, code: str, seconds: float, size: int | None) -> None:
        self.total += 1


@dataclass(frozen=True)
class AccountPlan:
    """An account's periods, and the billing account its FOCUS rows name."""

    periods: list[PeriodWindow]
    billing_account: str


def _account_plan(settings: Settings, options: BackfillOptions, now: datetime,
                  client: UsageClient, account: AccountConfig, focus: bool) -> AccountPlan:
    """*account*'s periods: with ``--period=billing`` or ``auto``, monthly from its team's
    current billing period (read from Scenario, and said so), else the calendar's."""
    reader = TeamReader(client, account, settings.max_users)
    billing_account = account.team_id or (_only_team(reader) if focus else None) \
        or account.name
    if settings.period not in ("billing", "auto"):
        return AccountPlan(plan_periods(settings, options, now), billing_account)
    limits = read_billing_period(reader, account.team_id)
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
    return AccountPlan(plan_periods(settings, options, now, billing_start), billing_account)


def _only_team(reader: TeamReader) -> str | None:
    """The team the key belongs to, when it lists exactly one (FOCUS's billing account)."""
    try:
        teams = reader.teams()
    except UpstreamError:
        return None
    return teams[0][0] if len(teams) == 1 else None


@dataclass
class Outcome:
    """What became of the periods of a run."""

    total: int = 0
    written: int = 0
    kept: int = 0  # from an earlier run
    empty: int = 0  # upstream has no data for them
    missing: list[str] = field(default_factory=list)

    def miss(self, line: str) -> None:
        """A period not written, and why: said at once, counted for the summary."""
        self.missing.append(line)
        log.error("period missing", extra={"fields": {"missing": line}})


def _write_periods(settings: Settings, options: BackfillOptions,
                   plans: dict[str, AccountPlan], sinks: list[Sink], fetcher: PeriodFetcher,
                   done: Callable[[str, PeriodWindow, str], None]) -> Outcome:
    """Fetch every period not kept yet and hand it to every sink."""
    collector_options = CollectorOptions(max_stale=float("inf"), period=settings.period,
                                         user_identity=settings.user_identity)
    outcome = Outcome()
    for account in settings.accounts:
        plan = plans[account.name]
        writer = SeriesWriter(account, collector_options, dict(options.labels),
                              settings.max_models, settings.max_users)
        refused: UpstreamError | None = None  # credentials refused: no more calls
        for window in plan.periods:
            outcome.total += 1
            if all(sink.has(account.name, window) for sink in sinks):
                outcome.kept += 1
                done(account.name, window, "kept")
                continue
            if refused is not None:
                outcome.miss(_missing(account, window, refused))
                continue
            try:
                usage = fetcher.fetch(account, window)
                families = writer.period_families(usage) if usage.points else []
            except InvalidResponse as exc:  # sums beyond the range of floats
                outcome.miss(_missing(account, window, UpstreamError(
                    FailureReason.INVALID_RESPONSE, f"invalid response: {exc}")))
                continue
            except UpstreamError as exc:
                refused = exc if exc.reason is FailureReason.AUTH else None
                outcome.miss(_missing(account, window, exc))
                continue
            if not usage.points:
                outcome.empty += 1
                log.warning("period empty", extra={"fields": {
                    "empty": f"{account.name} {describe(window)}: no data upstream"}})
                done(account.name, window, "empty")
                continue
            try:
                for sink in sinks:
                    sink.put(account, plan.billing_account, usage, families)
            except RemoteWriteError as exc:
                outcome.miss(f"{account.name} {describe(window)} (remote_write: {exc})")
                continue
            outcome.written += 1
            done(account.name, window, "written")
    return outcome


def _missing(account: AccountConfig, window: PeriodWindow, exc: UpstreamError) -> str:
    return f"{account.name} {describe(window)} ({exc.reason}: {exc})"


def run(settings: Settings, arguments: dict[str, Any],
        transport: httpx.BaseTransport | None) -> bool:
    """The command line's entry: *arguments* are the parsed flags, by ``dest``."""
    return run_backfill(settings, BackfillOptions.from_arguments(arguments), transport)
