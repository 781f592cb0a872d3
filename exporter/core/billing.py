"""Which period an account's counters run over: a configured calendar rule, or the
team's own billing period as upstream reports it.

- ``month`` (with an anchor day) and ``day``: UTC periods computed from the clock;
- ``billing``: the billing period of ``GET /teams/{teamId}/limits`` (any day and
  time, e.g. from the 17th 09:00 UTC). Once known, a period is kept until its end:
  a failing limits call never moves it. Past its end, before upstream has said
  what follows, the next one is taken to start one calendar month later, same
  day and time, which is how Scenario's monthly plans renew;
- ``auto``: ``billing`` when the account's key can read its limits, else ``month``.

:class:`AccountPeriod` holds one account's choice. It is told what the team
endpoints say (:meth:`learn`, :meth:`settle`) and answers which window a refresh
of usages asks for (:meth:`window`); until the first read of the limits has been
tried, ``billing`` and ``auto`` answer ``None``: a refresh waits for it, so that
the counters do not start on a guessed period and reset a minute later.
"""

from __future__ import annotations

import calendar
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from exporter.core.period import (
    PeriodWindow,
    current_window,
    next_period_start,
    period_start,
)

PeriodChoice = Literal["auto", "billing", "month", "day"]


def add_months(moment: datetime, months: int) -> datetime:
    """*moment* moved by whole calendar months, same day and time (the last day of a
    shorter month when the day does not exist there)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _months_between(anchor: datetime, moment: datetime) -> int:
    return (moment.year - anchor.year) * 12 + moment.month - anchor.month


def billing_start_at(anchor: datetime, moment: datetime) -> datetime:
    """The start of the monthly billing period holding *moment*, for periods that renew
    every calendar month at *anchor*'s day and time (before it and after it)."""
    months = _months_between(anchor, moment)
    while add_months(anchor, months) > moment:
        months -= 1
    while add_months(anchor, months + 1) <= moment:
        months += 1
    return add_months(anchor, months)


def next_billing_start(anchor: datetime, start: datetime) -> datetime:
    """The start of the billing period after the one that begins at *start*."""
    return add_months(anchor, _months_between(anchor, start) + 1)


@dataclass(frozen=True)
class Period:
    """One period: ``[start, end)``, aware UTC datetimes, and where it comes from."""

    start: datetime
    end: datetime
    source: Literal["billing", "month", "day"]


class AccountPeriod:
    """One account's period rule, and the billing period upstream told it."""

    def __init__(self, choice: PeriodChoice = "month", anchor_day: int = 1) -> None:
        self.choice = choice
        self._anchor_day = anchor_day
        self._billing: tuple[datetime, datetime] | None = None
        self._settled = choice in ("month", "day")
        self._lock = threading.Lock()

    def learn(self, start: float | None, end: float | None, now: float) -> None:
        """Upstream's billing period (wall-clock seconds). Taken when it holds *now*,
        so a stale or odd answer never moves the period in force."""
        if start is None or end is None or not start <= now < end:
            return
        with self._lock:
            self._billing = (datetime.fromtimestamp(start, timezone.utc),
                             datetime.fromtimestamp(end, timezone.utc))
            self._settled = True

    def settle(self) -> None:
        """The first read of the limits has been tried (whatever came of it)."""
        with self._lock:
            self._settled = True

    @property
    def settled(self) -> bool:
        return self._settled

    def period(self, now: datetime) -> Period | None:
        """The period holding *now*; None while ``billing``/``auto`` wait for the limits."""
        with self._lock:
            billing, settled = self._billing, self._settled
        if self.choice in ("billing", "auto"):
            if billing is not None:
                return _rolled(billing, now)
            if not settled:
                return None
            if self.choice == "billing":
                # No limits readable: the calendar month stands in until they are.
                return self._calendar(now, "month")
        return self._calendar(now, "day" if self.choice == "day" else "month")

    def window(self, now: datetime) -> PeriodWindow | None:
        """The period-to-date window ending at *now* (see :func:`current_window`)."""
        period = self.period(now)
        if period is None:
            return None
        window = current_window(now)
        return PeriodWindow(period.start, window.end)

    def describe(self, now: datetime) -> str:
        """Which period applies and why, in one line (landing page, ``check``)."""
        period = self.period(now)
        if period is None:
            return f"--period={self.choice}: waiting for the team's billing period"
        span = f"{period.start:%Y-%m-%d %H:%M} to {period.end:%Y-%m-%d %H:%M} UTC"
        if period.source == "billing":
            return f"billing period from Scenario, {span}"
        if self.choice in ("billing", "auto"):
            return (f"calendar month from day {self._anchor_day}, {span} (--period="
                    f"{self.choice}: the key cannot read the team's limits)")
        if period.source == "day":
            return f"UTC day, {span}"
        return f"calendar month from day {self._anchor_day}, {span}"

    def _calendar(self, now: datetime, kind: Literal["month", "day"]) -> Period:
        start = period_start(now, kind, self._anchor_day)
        return Period(start, next_period_start(start, kind), kind)


def _rolled(billing: tuple[datetime, datetime], now: datetime) -> Period:
    """The billing period holding *now*: the known one, or the months that follow it."""
    start, end = billing
    months = 0
    while now >= end:  # past the known end: monthly renewals, same day and time
        months += 1
        start, end = end, add_months(billing[0], months + 1)
    return Period(start, end, "billing")
