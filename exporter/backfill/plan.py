"""Which past periods a backfill writes: whole periods, none of them the current one."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Literal

from exporter.backfill.command import BackfillOptions
from exporter.config.settings import Settings
from exporter.core.billing import billing_start_at, next_billing_start
from exporter.core.errors import ConfigError
from exporter.core.period import PeriodWindow, next_period_start, period_start

_INSTANT = timedelta(microseconds=1)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def calendar_kind(settings: Settings) -> Literal["month", "day"]:
    """The calendar rule of ``--period``: ``day``, else months from the anchor day (which
    ``billing`` and ``auto`` fall back to when the limits cannot be read)."""
    return "day" if settings.period == "day" else "month"


def plan_periods(settings: Settings, options: BackfillOptions, now: datetime,
                 billing_start: datetime | None = None) -> list[PeriodWindow]:
    """The whole past periods to write; bad dates raise ConfigError.

    ``[start, end)`` when ``--start`` is given, else the ``--periods`` periods before
    *end*; *end* is ``--end``, else the start of the current period. With
    *billing_start* (the start of the account's current billing period, read from
    Scenario), periods step back from it by calendar months, same day and time;
    otherwise they are the calendar rule's.
    """
    if options.start is not None and options.end is not None and options.start >= options.end:
        raise ConfigError(f"--start: {options.start} is not before --end {options.end} "
                          "(--end is exclusive)")
    if billing_start is not None:
        anchor = billing_start

        def start_of(moment: datetime) -> datetime:
            return billing_start_at(anchor, moment)

        def after(start: datetime) -> datetime:
            return next_billing_start(anchor, start)
    else:
        kind, day = calendar_kind(settings), settings.period_anchor_day

        def start_of(moment: datetime) -> datetime:
            return period_start(moment, kind, day)

        def after(start: datetime) -> datetime:
            return next_period_start(start, kind)

    current = start_of(now)
    end = current if options.end is None else _midnight(options.end)
    if end > current:
        raise ConfigError(f"--end: {options.end} reaches into the current period, which began "
                          f"{current:%Y-%m-%d %H:%M} UTC and is the live exporter's; use "
                          f"--end={current:%Y-%m-%d}")
    if options.start is not None:
        first = start_of(_midnight(options.start))
    else:
        first = start_of(end - _INSTANT)  # the period that holds the last moment asked
        for _ in range(options.periods - 1):
            first = start_of(first - _INSTANT)
    periods = []
    while first < end:
        following = after(first)
        periods.append(PeriodWindow(first, following))
        first = following
    return periods
