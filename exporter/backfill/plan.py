"""Which past periods a backfill writes: whole periods, none of them the current one."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Literal

from exporter.backfill.command import BackfillOptions
from exporter.config.settings import Settings
from exporter.core.errors import ConfigError
from exporter.core.period import PeriodWindow, next_period_start, period_start


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def calendar_kind(settings: Settings) -> Literal["month", "day"]:
    """The calendar rule the backfill steps by: ``day``, else months from the anchor day
    (with ``--period=billing`` or ``auto`` too: the backfill does not read the teams'
    billing periods yet, and says so)."""
    return "day" if settings.period == "day" else "month"


def plan_periods(settings: Settings, options: BackfillOptions, now: datetime) -> list[PeriodWindow]:
    """The whole past periods that cover ``[start, end)``; bad dates raise ConfigError."""
    if options.start >= options.end:
        raise ConfigError(f"--start: {options.start} is not before --end {options.end} "
                          "(--end is exclusive)")
    kind, anchor = calendar_kind(settings), settings.period_anchor_day
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
