"""Period arithmetic, with the clock frozen: month start, anchor day, rollovers."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from freezegun import freeze_time
from prometheus_client import CollectorRegistry

from exporter.core.account import AccountConfig
from exporter.core.period import PeriodWindow, current_window, next_period_start, period_start
from exporter.core.values import FetchResult, ModelTotals, UsageSnapshot
from exporter.live.scheduler import AccountRefresher, RefreshPolicy
from exporter.metrics.own import Telemetry


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.mark.parametrize(("now", "anchor", "expected"), [
    (utc(2026, 11, 28, 12, 30), 1, utc(2026, 11, 1)),
    (utc(2026, 11, 1, 0, 0), 1, utc(2026, 11, 1)),
    (utc(2026, 10, 31, 23, 59, 59), 1, utc(2026, 10, 1)),
    (utc(2026, 11, 14, 23, 59), 15, utc(2026, 10, 15)),
    (utc(2026, 11, 15, 0, 0), 15, utc(2026, 11, 15)),
    (utc(2027, 1, 10), 15, utc(2026, 12, 15)),  # year rollover backwards
    (utc(2026, 3, 1), 28, utc(2026, 2, 28)),
    (utc(2028, 2, 29, 8), 1, utc(2028, 2, 1)),  # leap day
])
def test_month_period_start(now: datetime, anchor: int, expected: datetime) -> None:
    assert period_start(now, "month", anchor) == expected


def test_day_period_starts_at_utc_midnight_whatever_the_input_zone() -> None:
    from datetime import timedelta
    tokyo = timezone(timedelta(hours=9))
    # 2026-11-28 03:00 in Tokyo is 2026-11-27 18:00 UTC
    assert period_start(datetime(2026, 11, 28, 3, tzinfo=tokyo), "day") == utc(2026, 11, 27)


def test_next_period_start_rolls_months_and_years() -> None:
    assert next_period_start(utc(2026, 12, 1)) == utc(2027, 1, 1)
    assert next_period_start(utc(2026, 12, 15)) == utc(2027, 1, 15)
    assert next_period_start(utc(2026, 1, 28)) == utc(2026, 2, 28)
    assert next_period_start(utc(2026, 12, 31), "day") == utc(2027, 1, 1)


def test_invalid_anchor_day_is_refused() -> None:
    with pytest.raises(ValueError):
        period_start(utc(2026, 11, 1), "month", 29)


@freeze_time("2026-12-31 23:59:59")
def test_current_window_uses_the_frozen_clock() -> None:
    window = current_window(datetime.now(timezone.utc))
    assert window == PeriodWindow(utc(2026, 12, 1), utc(2026, 12, 31, 23, 59, 59))


def test_day_pieces_cut_on_utc_midnights_and_tile_the_window() -> None:
    window = PeriodWindow(utc(2026, 11, 1), utc(2026, 11, 20, 12, 30))
    assert window.days == 20
    pieces = window.day_pieces(8)
    assert [(p.start, p.end) for p in pieces] == [
        (utc(2026, 11, 1), utc(2026, 11, 9)), (utc(2026, 11, 9), utc(2026, 11, 17)),
        (utc(2026, 11, 17), utc(2026, 11, 20, 12, 30))]
    for days in (1, 2, 4, 16, 32):
        cut = window.day_pieces(days)
        assert cut[0].start == window.start and cut[-1].end == window.end
        assert all(a.end == b.start for a, b in zip(cut, cut[1:], strict=False))
        assert all(p.end.time() == datetime.min.time() for p in cut[:-1])
        assert len(cut) == -(-20 // days)
    # Pieces of 2n days are unions of pieces of n days: the cuts of 8 are cuts of 4.
    assert {p.end for p in window.day_pieces(8)} <= {p.end for p in window.day_pieces(4)}
    assert window.day_pieces(None) == [window]


def test_day_pieces_of_a_window_ending_on_midnight_and_of_a_partial_first_day() -> None:
    whole_days = PeriodWindow(utc(2026, 11, 1), utc(2026, 11, 5))
    assert whole_days.days == 4
    assert [p.end for p in whole_days.day_pieces(2)] == [utc(2026, 11, 3), utc(2026, 11, 5)]
    late_start = PeriodWindow(utc(2026, 11, 1, 18), utc(2026, 11, 3, 6))
    assert late_start.days == 3
    assert [p.start for p in late_start.day_pieces(1)] == [
        utc(2026, 11, 1, 18), utc(2026, 11, 2), utc(2026, 11, 3)]
    with pytest.raises(ValueError):
        late_start.day_pieces(0)


def test_counter_reset_and_created_change_at_the_month_boundary() -> None:
    """Across the rollover the window starts anew: the counters fall back (a reset
    that rate() handles) and `_created` moves to the new period start."""
    windows: list[PeriodWindow] = []

    def fetch(account: AccountConfig, window: PeriodWindow, permit: object) -> FetchResult:
        windows.append(window)
        # spend proportional to the hours elapsed since the period start
        hours = window.seconds / 3600
        totals = ModelTotals(hours, 0, 0, 0, hours)
        return FetchResult(UsageSnapshot(window, models={"m": totals}), 1, 10)

    from exporter.metrics.business import CollectorOptions
    from exporter.metrics.collect import AccountsCollector

    account = AccountConfig(name="a", api_key="k", api_secret="s")
    with freeze_time("2026-12-31 22:00:00") as frozen:
        refresher = AccountRefresher(account, fetch, Telemetry(CollectorRegistry(), ["a"]),
                                     RefreshPolicy(ttl=60), spawn=lambda work: work())

        def cost_and_created() -> tuple[float, float]:
            refresher.get()
            families = {f.name: f for f in AccountsCollector(
                [refresher.view], datetime.now(timezone.utc).timestamp(),
                CollectorOptions()).collect()}
            samples = families["scenario_model_cost_creative_units"].samples
            total = next(s.value for s in samples if s.name.endswith("_total"))
            created = next(s.value for s in samples if s.name.endswith("_created"))
            return total, created

        before, created_before = cost_and_created()
        frozen.tick(2 * 3600 + 1800)  # 2027-01-01 00:30
        after, created_after = cost_and_created()

    assert windows[0].start == utc(2026, 12, 1) and windows[1].start == utc(2027, 1, 1)
    assert before == pytest.approx(30 * 24 + 22)
    assert after == pytest.approx(0.5)  # the reset: no guard across periods
    assert created_before == utc(2026, 12, 1).timestamp()
    assert created_after == utc(2027, 1, 1).timestamp()
    assert refresher.view.snapshot is not None
