"""Which whole past periods a backfill writes (exporter/backfill/plan.py): the live
exporter's periods, anchor day included, a year back by default and as far back as
asked, and a bad range refused with one line."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from exporter.backfill.command import BackfillOptions
from exporter.backfill.plan import plan_periods
from exporter.core.errors import ConfigError
from exporter.core.period import period_start
from testkit.backfill import NOW, two_accounts, utc


def test_an_anchor_day_other_than_1_gives_the_live_exporters_periods(tmp_path: Path) -> None:
    settings = two_accounts(tmp_path, **{"period.anchor-day": "15"})
    periods = plan_periods(settings, BackfillOptions(date(2026, 8, 20), date(2026, 11, 15),
                                                     "-"), NOW)
    assert [(p.start.date(), p.end.date()) for p in periods] == [
        (date(2026, 8, 15), date(2026, 9, 15)), (date(2026, 9, 15), date(2026, 10, 15)),
        (date(2026, 10, 15), date(2026, 11, 15))]
    for p in periods:  # the live exporter, at any time of a period, agrees on its start
        assert period_start(p.end - timedelta(seconds=1), "month", 15) == p.start


@pytest.mark.parametrize(("start", "end", "message"), [
    (date(2026, 10, 1), date(2026, 9, 1), "--start: 2026-10-01 is not before --end 2026-09-01"),
    (date(2026, 10, 1), date(2026, 11, 2), "--end: 2026-11-02 reaches into the current period, "
                                           "which began 2026-11-01"),
])
def test_bad_dates_are_refused(tmp_path: Path, start: date, end: date, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message):
        plan_periods(two_accounts(tmp_path), BackfillOptions(start, end, "-"), NOW)


def _bounds(periods: list) -> list[tuple[date, date]]:  # type: ignore[type-arg]
    return [(p.start.date(), p.end.date()) for p in periods]


def test_by_default_the_twelve_periods_before_the_current_one(tmp_path: Path) -> None:
    periods = plan_periods(two_accounts(tmp_path), BackfillOptions(None, None, "-"), NOW)
    assert len(periods) == 12
    assert periods[0].start == utc(2025, 11, 1) and periods[-1].end == utc(2026, 11, 1)
    assert all(a.end == b.start for a, b in zip(periods, periods[1:], strict=False))


def test_periods_count_back_from_end_and_from_a_billing_anchor(tmp_path: Path) -> None:
    settings = two_accounts(tmp_path)
    three = plan_periods(settings, BackfillOptions(None, date(2026, 9, 1), "-", periods=3), NOW)
    assert _bounds(three) == [(date(2026, 6, 1), date(2026, 7, 1)),
                              (date(2026, 7, 1), date(2026, 8, 1)),
                              (date(2026, 8, 1), date(2026, 9, 1))]
    # A billing period that began 14 November 14:37: whole months back from it.
    billing = plan_periods(settings, BackfillOptions(None, None, "-", periods=2), NOW,
                           datetime(2026, 11, 14, 14, 37, tzinfo=timezone.utc))
    assert [(p.start, p.end) for p in billing] == [
        (datetime(2026, 9, 14, 14, 37, tzinfo=timezone.utc),
         datetime(2026, 10, 14, 14, 37, tzinfo=timezone.utc)),
        (datetime(2026, 10, 14, 14, 37, tzinfo=timezone.utc),
         datetime(2026, 11, 14, 14, 37, tzinfo=timezone.utc))]


def test_a_start_two_years_back_is_planned_not_refused(tmp_path: Path) -> None:
    """120 days is the longest window of one request, not how far back upstream keeps."""
    periods = plan_periods(two_accounts(tmp_path),
                           BackfillOptions(date(2024, 11, 20), None, "-"), NOW)
    assert len(periods) == 24 and periods[0].start == utc(2024, 11, 1)


@pytest.mark.parametrize(("values", "message"), [
    ({"periods": "0", "output": "-"}, "--periods: 0 is not at least 1"),
    ({"periods": "twelve", "output": "-"}, "--periods: 'twelve' is not a whole number"),
    ({"periods": "3", "start": "2026-01-01", "output": "-"},
     "--periods: give --periods or --start, not both"),
    ({}, "--output: give a file to write"),
    ({"output_format": "focus", "remote_write.url": "http://127.0.0.1:9/api/v1/write"},
     "--output-format: focus needs --output"),
])
def test_bad_backfill_flags_name_the_flag(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message):
        BackfillOptions.from_arguments(values)
