"""Large accounts: the period fetched in day-aligned pieces, the split remembered, and
the cap planned for it.

The upstream is the demo account (whose totals are known) behind a gateway that
answers 413 above a window length (testkit.doubles), over httpx's MockTransport.
Its API-key fields are rounded once per UTC day, as upstream's daily rollups are: a
cut inside a day loses a little of them, a cut on midnight loses nothing. The whole
data side with large and many accounts is in ``tests/component/test_data_side.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from prometheus_client import CollectorRegistry

from exporter.core.account import AccountConfig
from exporter.core.errors import UpstreamError
from exporter.core.period import PeriodWindow
from exporter.core.values import FetchResult, UsageSnapshot
from exporter.live.scheduler import AccountRefresher, RefreshPolicy, refresh_interval
from exporter.metrics.own import Telemetry
from exporter.upstream.client import UsageClient
from exporter.upstream.demo import DemoAccount
from exporter.upstream.pieces import (
    RECHECK_SECONDS,
    REFETCH_SECONDS,
    SETTLE_SECONDS,
    PieceFetcher,
    fetch_in_pieces,
)
from exporter.upstream.politeness import HOUR
from exporter.upstream.summing import merge
from testkit.clock import FakeClock
from testkit.doubles import (
    ACCOUNT,
    DAY,
    T0,
    MaxRandom,
    gateway,
    recording_transport,
    rounding_demo,
)
from testkit.oracle import model_totals

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
WINDOW = PeriodWindow(START, datetime(2026, 11, 20, 12, 30, 15, 250000, tzinfo=timezone.utc))
SECTIONS = ("models", "assets", "nsfw", "usages")


def client_for(account: DemoAccount, limit_days: float | None,
               seen: list[PeriodWindow] | None = None) -> UsageClient:
    return UsageClient("https://api.example/v1", 5, transport=gateway(account, limit_days, seen))


def assert_same_totals(split: UsageSnapshot, whole: UsageSnapshot, pieces: int) -> None:
    for section in SECTIONS:
        assert getattr(split, section) == getattr(whole, section), section
    # consumption[] is a window sum that upstream rounds to the cent, per window.
    assert split.users.keys() == whole.users.keys()
    for user, totals in whole.users.items():
        assert split.users[user] == pytest.approx(totals, abs=0.005 * pieces + 1e-9)
    assert split.window == whole.window


@pytest.mark.parametrize("limit_days", [3, 10])
def test_pieces_cut_on_midnight_add_up_exactly(limit_days: int) -> None:
    account = rounding_demo()
    whole = client_for(account, None).fetch_window(ACCOUNT, WINDOW)
    seen: list[PeriodWindow] = []
    split = fetch_in_pieces(client_for(account, limit_days, seen).fetch_window, ACCOUNT, WINDOW)

    served = [w for w in seen if w.seconds <= limit_days * DAY]
    assert split.requests == len(seen) and len(served) > 1
    assert_same_totals(split.snapshot, whole.snapshot, len(served))
    truth = model_totals(account, WINDOW.start, WINDOW.end)
    assert {m: t.cost for m, t in split.snapshot.models.items()} == \
        {m: t["cost"] for m, t in truth.items()}
    # Every piece asked for starts and ends on a UTC midnight, but the last one ends
    # at the end of the window; together they tile it.
    served.sort(key=lambda w: w.start)
    assert served[0].start == WINDOW.start and served[-1].end == WINDOW.end
    assert all(a.end == b.start for a, b in zip(served, served[1:], strict=False))
    assert all(w.end.time() == datetime.min.time() for w in served[:-1])


def test_a_cut_inside_a_day_would_lose_the_fields_rounded_per_day() -> None:
    """What the test above guards against: the fake really rounds per day."""
    account, client = rounding_demo(), client_for(rounding_demo(), None)
    cut = datetime(2026, 11, 8, 4, tzinfo=timezone.utc)
    halves = [client.fetch_window(ACCOUNT, PeriodWindow(WINDOW.start, cut)),
              client.fetch_window(ACCOUNT, PeriodWindow(cut, WINDOW.end))]
    whole = client.fetch_window(ACCOUNT, WINDOW).snapshot
    joined = merge(halves[0].snapshot, halves[1].snapshot)
    assert model_totals(account, WINDOW.start, WINDOW.end)  # the same deterministic account

    def assets(snapshot: UsageSnapshot, field: str) -> float:
        return sum(getattr(t, field) for t in snapshot.assets.values())

    assert assets(joined, "assets_api_key") < assets(whole, "assets_api_key")
    assert assets(joined, "assets") == assets(whole, "assets")


def at(days: float) -> PeriodWindow:
    """The period-to-date window *days* after the start of November."""
    return PeriodWindow(START, START + timedelta(days=days))


def test_the_split_and_the_closed_pieces_are_remembered() -> None:
    account = rounding_demo()
    seen: list[PeriodWindow] = []
    pieces = PieceFetcher(client_for(account, 10, seen).fetch_window)

    first = pieces.fetch(ACCOUNT, at(20.5))
    # whole month 413, 16 days 413, then 8 + 8 + 4.5 days
    assert first.requests == len(seen) == 5 and pieces.days == 8
    seen.clear()
    assert pieces.planned_calls(at(20.51)) == 1
    later = pieces.fetch(ACCOUNT, at(20.51))
    assert seen == [PeriodWindow(START + timedelta(days=16), at(20.51).end)]
    whole = client_for(account, None).fetch_window(ACCOUNT, at(20.51)).snapshot
    assert_same_totals(later.snapshot, whole, 3)

    # A piece that has just closed is fetched again until it has settled, and
    # every piece is fetched again once an hour.
    pieces = PieceFetcher(client_for(account, 10, seen).fetch_window)
    pieces.fetch(ACCOUNT, at(23.99))
    calls = []
    for moment in (24.02, 24.035, 24.045, 24.05):
        seen.clear()
        pieces.fetch(ACCOUNT, at(moment))
        calls.append([(w.start - START).days for w in seen])
    assert SETTLE_SECONDS == REFETCH_SECONDS == 3600
    assert calls == [[16, 24],  # [16, 24) closed 29 minutes ago: not settled
                     [0, 8, 16, 24],  # an hour since every piece was fetched
                     [16, 24],  # [16, 24) fetched 50 minutes after its end: not kept
                     [24]]  # fetched 65 minutes after its end: kept


def test_fewer_pieces_are_tried_once_a_day_which_refetches_closed_days() -> None:
    account = rounding_demo()
    seen: list[PeriodWindow] = []
    pieces = PieceFetcher(client_for(account, 10, seen).fetch_window)
    pieces.fetch(ACCOUNT, at(20.5))
    seen.clear()
    calls_per_fetch = []
    for step in range(1, 24 * 6 + 2):  # every 10 minutes for a day
        before = len(seen)
        pieces.fetch(ACCOUNT, at(20.5 + step / 144))
        calls_per_fetch.append(len(seen) - before)
    # Once a day: 16 days (413), then 8 + 8 + 5.5 days; every hour: 8 + 8 + 5.x
    # days; else only the open piece.
    assert calls_per_fetch.count(4) == 1 and calls_per_fetch.count(3) == 23
    assert calls_per_fetch.count(1) == len(calls_per_fetch) - 24
    assert pieces.days == 8 and RECHECK_SECONDS == DAY

    # When the account has shrunk, the recheck finds that fewer pieces work.
    small = PieceFetcher(client_for(account, 20, seen).fetch_window)
    small.days = 4
    small.fetch(ACCOUNT, at(20.5))
    assert small.days == 8


def test_the_split_outlives_the_period_but_not_its_closed_pieces() -> None:
    seen: list[PeriodWindow] = []
    pieces = PieceFetcher(client_for(rounding_demo(), 10, seen).fetch_window)
    pieces.fetch(ACCOUNT, at(29.5))
    december = PeriodWindow(datetime(2026, 12, 1, tzinfo=timezone.utc),
                            datetime(2026, 12, 12, 6, tzinfo=timezone.utc))
    seen.clear()
    pieces.fetch(ACCOUNT, december)  # a recheck (a day has passed): 16 days 413, then 8s
    assert [w.seconds / DAY for w in seen] == [11.25, 8, 3.25]
    assert pieces.days == 8


def test_a_gateway_that_refuses_even_one_day_fails_with_too_large(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0)
    registry = CollectorRegistry()
    telemetry = Telemetry(registry, ["acme"])
    limit: list[float | None] = [None]
    account = rounding_demo()

    def fetch(acct: AccountConfig, window: PeriodWindow,
              permit: Callable[[], bool] | None) -> FetchResult:
        return client_for(account, limit[0]).fetch_window(acct, window, permit)

    policy = RefreshPolicy(ttl=60, max_requests_per_hour=3600, max_models=500, max_users=1000)
    refresher = AccountRefresher(ACCOUNT, fetch, telemetry, policy, clock=clock.monotonic,
                                 wall=clock.wall, spawn=lambda work: work(), rng=MaxRandom())
    good = refresher.get()
    assert good.up and good.snapshot is not None
    limit[0] = 0.5  # from now on, even one day is too large
    clock.advance(61)
    with caplog.at_level(logging.INFO):
        failed = refresher.get()
    assert not failed.up and failed.snapshot == good.snapshot  # last good data served
    assert registry.get_sample_value("scenario_exporter_refresh_failures_total",
                                     {"account": "acme", "reason": "too_large"}) == 1.0
    (line,) = [r for r in caplog.records if r.getMessage() == "refresh failed"]
    fields = line.__dict__["fields"]
    assert fields["account"] == "acme" and fields["reason"] == "too_large"
    # the smallest window tried: the first day
    assert "one day (2026-11-01T00:00:00.000Z/2026-11-02T00:00:00.000Z)" in fields["error"]


def test_a_refresh_needing_k_calls_runs_whole_or_waits() -> None:
    clock = FakeClock(T0)
    registry = CollectorRegistry()
    telemetry = Telemetry(registry, ["acme"])
    seen: list[PeriodWindow] = []
    client = client_for(rounding_demo(), 10, seen)
    refresher = AccountRefresher(ACCOUNT, client.fetch_window, telemetry,
                                 RefreshPolicy(ttl=10, max_requests_per_hour=6),
                                 clock=clock.monotonic,
                                 wall=clock.wall, spawn=lambda work: work(), rng=MaxRandom())
    assert refresher.get().up and len(seen) == 5  # learnt the split: 5 of the 6 calls
    # The next refresh would need 1 call: it waits for the pace the cap allows.
    clock.advance(HOUR - 1)
    assert refresher.maybe_refresh()
    assert len(seen) == 6
    # A day later the recheck needs 4 calls (16 days, then 8 + 8 + 4.x): it waits
    # until the cap has room for all of them rather than failing half-way.
    clock.advance(DAY)
    refresher._cap.try_acquire()
    refresher._cap.try_acquire()
    refresher._cap.try_acquire()  # 3 of 6 taken in this hour by ourselves
    assert not refresher.maybe_refresh() and len(seen) == 6
    clock.advance(HOUR)
    assert refresher.maybe_refresh() and len(seen) == 10
    assert registry.get_sample_value("scenario_exporter_refresh_failures_total",
                                     {"account": "acme", "reason": "request_cap"}) == 0.0


def test_the_hourly_budget_is_planned_for_the_pieces() -> None:
    assert refresh_interval(300, 60) == 300  # no split: one call per TTL
    assert refresh_interval(10, 60) == 60  # 10 s cannot be met with 60 calls an hour
    # a refresh costs 1 call, the daily recheck 4: the budget keeps room for it
    assert refresh_interval(10, 60, 1, 4) == HOUR / 57
    assert refresh_interval(10, 3, 1, 4) == HOUR  # no room for a recheck: wait


def test_accounts_refreshed_together_spread_over_the_ttl() -> None:
    class LowRandom(MaxRandom):
        def __init__(self, share: float) -> None:
            super().__init__()
            self.share = share

        def uniform(self, a: float, b: float) -> float:
            return a + (b - a) * self.share

    clock = FakeClock(T0)
    refreshers = []
    for index in range(5):
        fetch = client_for(rounding_demo(), None).fetch_window
        refreshers.append(AccountRefresher(
            ACCOUNT, fetch, Telemetry(CollectorRegistry(), ["acme"]),
            RefreshPolicy(ttl=300, max_requests_per_hour=60), clock=clock.monotonic,
            wall=clock.wall, spawn=lambda work: work(), rng=LowRandom(index / 4)))
    for refresher in refreshers:
        refresher.get()
    due_at = []
    for _ in range(300):  # scrapes every second
        clock.advance(1)
        for index, refresher in enumerate(refreshers):
            if refresher.maybe_refresh():
                due_at.append((index, clock.seconds))
    assert due_at == [(0, 150), (1, 188), (2, 225), (3, 263), (4, 300)]



def test_a_server_error_that_is_not_about_size_is_not_split() -> None:
    seen: list[httpx.Request] = []
    client = UsageClient("https://api.example/v1", 5, transport=recording_transport(
        lambda r: httpx.Response(502, json={"message": "Bad Gateway"}), seen))
    with pytest.raises(UpstreamError) as caught:
        fetch_in_pieces(client.fetch_window, ACCOUNT, WINDOW)
    assert caught.value.reason == "server_error" and len(seen) == 1


def test_splitting_respects_the_hourly_cap() -> None:
    client = UsageClient("https://api.example/v1", 5, transport=httpx.MockTransport(
        lambda r: httpx.Response(413, json={})))
    budget = iter([True, True, True, False])
    with pytest.raises(UpstreamError) as caught:
        fetch_in_pieces(client.fetch_window, ACCOUNT, WINDOW, permit=lambda: next(budget))
    assert caught.value.reason == "request_cap"



def test_split_halves_that_overflow_together_are_an_invalid_response() -> None:
    """Each half of a split window is finite, their sum is not: invalid, not +Inf."""
    def answer(request: httpx.Request) -> httpx.Response:
        start, end = (datetime.fromisoformat(request.url.params[k].replace("Z", "+00:00"))
                      for k in ("startDate", "endDate"))
        if end - start > timedelta(days=1):
            return httpx.Response(413, content=b'{"message":"Response payload size exceeded"}')
        return httpx.Response(200, content=b'{"modelUsages":[{"modelId":"m","points":'
                                           b'[{"cost":1e308}]}]}')

    codes: list[str] = []
    client = UsageClient("http://upstream.test/v1", 5.0, transport=httpx.MockTransport(answer),
                         record=lambda account, code, seconds, size: codes.append(code))
    try:
        with pytest.raises(UpstreamError) as failed:
            fetch_in_pieces(client.fetch_window, ACCOUNT,
                            PeriodWindow(START, datetime(2026, 11, 3, 12, tzinfo=timezone.utc)))
    finally:
        client.close()
    assert failed.value.reason == "invalid_response"
    assert "not a finite number" in str(failed.value)
    assert codes[0] == "413" and codes.count("200") >= 2


def test_a_recheck_that_fails_for_another_reason_keeps_the_split() -> None:
    healthy = client_for(rounding_demo(), 10)
    broken = [False]

    def fetch(acct: AccountConfig, window: PeriodWindow,
              permit: Callable[[], bool] | None) -> FetchResult:
        if broken[0]:
            raise UpstreamError("server_error", "HTTP 500")
        return healthy.fetch_window(acct, window, permit)

    pieces = PieceFetcher(fetch)
    pieces.fetch(ACCOUNT, at(12.5))
    assert pieces.days == 8
    broken[0] = True
    with pytest.raises(UpstreamError):
        pieces.fetch(ACCOUNT, at(13.6))  # a recheck: 16 days on trial, never answered
    assert pieces.days == 8
    broken[0] = False
    assert pieces.planned_calls(at(13.62)) == 1  # the closed piece [0, 8) is still kept
