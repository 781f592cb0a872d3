"""Period arithmetic: which window of upstream data is "period to date".

The exporter exposes, per account, the sum of every upstream point from the
start of the current billing period to now. Such a sum only grows within the
period and falls back to ~0 when the next one starts: a Prometheus counter that
resets, whose ``_created`` is the period start.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

PeriodKind = Literal["month", "day"]
DAY_SECONDS = 86400.0


def wall_clock() -> float:
    """Seconds since the epoch; looked up at each call so that frozen clocks apply."""
    return time.time()


def monotonic_clock() -> float:
    """A monotonic clock for durations and TTLs; looked up at each call, like wall_clock."""
    return time.monotonic()


@dataclass(frozen=True)
class PeriodWindow:
    """A half-open window ``[start, end)`` of upstream data, both aware UTC datetimes."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def days(self) -> int:
        """How many UTC days this window touches, a partial day counting as one."""
        first = self.start.replace(hour=0, minute=0, second=0, microsecond=0)
        return max(1, math.ceil((self.end - first).total_seconds() / DAY_SECONDS))

    def day_pieces(self, days: int | None) -> list[PeriodWindow]:
        """Cut this window on UTC midnights into pieces of *days* whole days.

        The cuts fall every *days* days counted from the UTC midnight on or
        before the start, so that pieces of 2*days days are unions of pieces of
        *days* days, and the pieces of one period keep the same bounds from one
        refresh to the next. The last piece ends where the window ends (often
        "now"). ``None`` means no cut: the window itself.

        Upstream sums its points in buckets of a day or less that start on UTC
        midnight (for windows longer than three days, one bucket per day): a cut
        inside a day would give each side its own partial bucket, and fields
        that upstream rounds per bucket would no longer add up to the whole.
        """
        if days is None:
            return [self]
        if days < 1:
            raise ValueError("a piece is at least one day")
        step = timedelta(days=days)
        cut = self.start.replace(hour=0, minute=0, second=0, microsecond=0) + step
        pieces = []
        start = self.start
        while cut < self.end:
            pieces.append(PeriodWindow(start, cut))
            start, cut = cut, cut + step
        pieces.append(PeriodWindow(start, self.end))
        return pieces


def _as_utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        return now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc)


def period_start(now: datetime, period: PeriodKind = "month", anchor_day: int = 1) -> datetime:
    """Start of the period containing *now*: 00:00 UTC of the anchor day, or of today."""
    now = _as_utc(now)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return midnight
    if not 1 <= anchor_day <= 28:
        raise ValueError("anchor_day must be between 1 and 28")
    if now.day >= anchor_day:
        return midnight.replace(day=anchor_day)
    if now.month == 1:
        return midnight.replace(year=now.year - 1, month=12, day=anchor_day)
    return midnight.replace(month=now.month - 1, day=anchor_day)


def next_period_start(start: datetime, period: PeriodKind = "month") -> datetime:
    """Start of the period after the one that begins at *start*."""
    if period == "day":
        return start + timedelta(days=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def current_window(now: datetime, period: PeriodKind = "month",
                   anchor_day: int = 1) -> PeriodWindow:
    """The period-to-date window ending at *now*."""
    # Upstream takes milliseconds: keep the window exactly what is asked for, so
    # that scenario_data_as_of_timestamp_seconds is the endDate sent.
    now = _as_utc(now)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    return PeriodWindow(period_start(now, period, anchor_day), now)


def isoformat_utc(moment: datetime) -> str:
    """*moment* in UTC, to the millisecond, as upstream takes it (``...T00:00:00.000Z``)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"


def describe_window(window: PeriodWindow) -> str:
    """``start/end`` in the ISO 8601 form sent upstream, for logs and errors."""
    return f"{isoformat_utc(window.start)}/{isoformat_utc(window.end)}"


def parse_iso(text: str) -> datetime:
    """Parse the ISO 8601 timestamps the client sends (``...Z``)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
