"""Which whole past periods a backfill writes (exporter/backfill/plan.py): the live
exporter's periods, anchor day included, and a bad range refused with one line."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from exporter.backfill.command import BackfillOptions
from exporter.backfill.plan import plan_periods
from exporter.core.errors import ConfigError
from exporter.core.period import period_start
from testkit.backfill import NOW, two_accounts


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
    (date(2026, 7, 15), date(2026, 9, 1), "--start: the period of 2026-07-15 begins 2026-07-01, "
                                          "further back than upstream keeps data"),
])
def test_bad_dates_are_refused(tmp_path: Path, start: date, end: date, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message):
        plan_periods(two_accounts(tmp_path), BackfillOptions(start, end, "-"), NOW)
