"""Which period an account's counters run over (exporter.core.billing): the calendar
rules, the team's billing period once upstream has said it, kept through failures and
renewed monthly past its end, and auto's fall-back."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from exporter.core.billing import AccountPeriod, add_months

UTC = timezone.utc
START = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
END = datetime(2026, 12, 17, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(("moment", "months", "expected"), [
    (START, 1, END),
    (datetime(2026, 1, 31, 9, tzinfo=UTC), 1, datetime(2026, 2, 28, 9, tzinfo=UTC)),
    (datetime(2026, 12, 17, 9, tzinfo=UTC), 1, datetime(2027, 1, 17, 9, tzinfo=UTC)),
    (datetime(2026, 3, 17, 9, tzinfo=UTC), -3, datetime(2025, 12, 17, 9, tzinfo=UTC)),
    (datetime(2024, 2, 29, tzinfo=UTC), 12, datetime(2025, 2, 28, tzinfo=UTC)),
])
def test_calendar_months_keep_the_day_and_time(moment: datetime, months: int,
                                               expected: datetime) -> None:
    assert add_months(moment, months) == expected


def test_the_calendar_rules_need_nothing_from_upstream() -> None:
    month = AccountPeriod("month", anchor_day=5)
    assert month.settled
    window = month.window(NOW)
    assert window is not None and window.start == datetime(2026, 11, 5, tzinfo=UTC)
    day = AccountPeriod("day").period(NOW)
    assert day is not None and (day.start, day.end) == (
        datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))


@pytest.mark.parametrize("choice", ["billing", "auto"])
def test_billing_waits_for_the_limits_then_follows_them(choice: str) -> None:
    period = AccountPeriod(choice, anchor_day=1)  # type: ignore[arg-type]
    assert period.window(NOW) is None and not period.settled
    period.learn(START.timestamp(), END.timestamp(), NOW.timestamp())
    window = period.window(NOW)
    assert window is not None and (window.start, window.end) == (START, NOW)
    assert period.describe(NOW).startswith("billing period from Scenario, 2026-11-17 09:00")


def test_a_known_period_is_kept_and_renewed_monthly_past_its_end() -> None:
    period = AccountPeriod("billing")
    period.learn(START.timestamp(), END.timestamp(), NOW.timestamp())
    # Failing limits calls tell nothing: the period stands; an answer whose period
    # does not hold the moment (stale, odd) is not taken either.
    period.settle()
    period.learn(None, None, NOW.timestamp())
    period.learn(datetime(2026, 10, 17, 9, tzinfo=UTC).timestamp(), START.timestamp(),
                 NOW.timestamp())
    held = period.period(NOW)
    assert held is not None and (held.start, held.end) == (START, END)
    later = datetime(2027, 1, 20, tzinfo=UTC)  # two renewals on, nothing heard meanwhile
    renewed = period.period(later)
    assert renewed is not None and (renewed.start, renewed.end) == (
        datetime(2027, 1, 17, 9, tzinfo=UTC), datetime(2027, 2, 17, 9, tzinfo=UTC))
    assert period.period(END) is not None and period.period(END).start == END  # type: ignore[union-attr]


def test_a_new_period_from_upstream_replaces_the_old_one() -> None:
    period = AccountPeriod("billing")
    period.learn(START.timestamp(), END.timestamp(), NOW.timestamp())
    upgraded = datetime(2026, 11, 25, 14, tzinfo=UTC)  # a plan change restarts the period
    moment = datetime(2026, 11, 26, tzinfo=UTC)
    period.learn(upgraded.timestamp(), add_months(upgraded, 1).timestamp(), moment.timestamp())
    window = period.window(moment)
    assert window is not None and window.start == upgraded


@pytest.mark.parametrize(("choice", "source"), [("auto", "month"), ("billing", "month")])
def test_without_readable_limits_the_calendar_month_stands_in(choice: str, source: str) -> None:
    period = AccountPeriod(choice, anchor_day=3)  # type: ignore[arg-type]
    period.settle()  # the first read failed (403, several teams, the cap)
    found = period.period(NOW)
    assert found is not None and found.source == source
    assert found.start == datetime(2026, 11, 3, tzinfo=UTC)
    assert "cannot read the team's limits" in period.describe(NOW)
