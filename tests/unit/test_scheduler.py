"""The refresh scheduler with a controllable clock: TTL, one refresh for concurrent
scrapes, stale-while-revalidate, Retry-After, back-off, hourly cap, memory given back.
The upstream client itself is tested in test_client.py."""

from __future__ import annotations

import platform
import sys
import threading
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from exporter.core.account import AccountConfig
from exporter.core.errors import UpstreamError
from exporter.core.period import PeriodWindow
from exporter.core.values import AccountView, FetchResult, ModelTotals, UsageSnapshot
from exporter.live.memory import release_free_memory
from exporter.live.scheduler import AccountRefresher, RefreshPolicy
from exporter.metrics.own import Telemetry
from exporter.upstream.politeness import BACKOFF_BASE_SECONDS
from testkit.clock import FakeClock, ThreadSpawn
from testkit.doubles import ACCOUNT, T0, MaxRandom
from testkit.waiting import wait_for


def make_refresher(fetch: Callable[..., FetchResult], clock: FakeClock, *, ttl: float = 300,
                   cap: int = 3600, spawn: Callable[[Callable[[], None]], None] | None = None,
                   telemetry: Telemetry | None = None) -> AccountRefresher:
    return AccountRefresher(
        ACCOUNT, fetch, telemetry or Telemetry(CollectorRegistry(), ["acme"]),
        RefreshPolicy(ttl=ttl, max_requests_per_hour=cap), clock=clock.monotonic, wall=clock.wall,
        spawn=spawn or (lambda work: work()), rng=MaxRandom())


class CountingFetch:
    """A fetch that returns a growing snapshot, or raises what it is told to."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: UpstreamError | None = None

    def __call__(self, account: AccountConfig, window: PeriodWindow,
                 permit: Callable[[], bool]) -> FetchResult:
        self.calls += 1
        if not permit():
            raise UpstreamError("request_cap", "cap")
        if self.error is not None:
            raise self.error
        totals = ModelTotals(*(float(self.calls),) * 5)
        return FetchResult(UsageSnapshot(window, models={"m": totals}), 1, 1)


def test_scrapes_within_the_ttl_are_served_from_memory() -> None:
    clock, fetch = FakeClock(T0), CountingFetch()
    refresher = make_refresher(fetch, clock, ttl=300)
    for _ in range(50):
        refresher.get()
        clock.advance(5)  # 250 s in all
    assert fetch.calls == 1
    clock.advance(51)
    view = refresher.get()
    assert fetch.calls == 2 and view.snapshot is not None
    assert view.snapshot.models["m"].cost == 2.0


def test_stale_while_revalidate_answers_at_once_with_the_old_data() -> None:
    clock, release = FakeClock(T0), threading.Event()
    calls: list[int] = []

    def slow_fetch(account: AccountConfig, window: PeriodWindow, permit: object) -> FetchResult:
        calls.append(1)
        if len(calls) > 1:
            assert release.wait(10)
        totals = ModelTotals(*(float(len(calls)),) * 5)
        return FetchResult(UsageSnapshot(window, models={"m": totals}), 1, 1)

    spawn = ThreadSpawn()
    refresher = make_refresher(slow_fetch, clock, ttl=60, spawn=spawn)
    first = refresher.get(wait=5)
    assert first.snapshot is not None and first.snapshot.models["m"].cost == 1.0
    clock.advance(61)
    stale = refresher.get(wait=3600)  # the refresh is blocked upstream
    assert spawn.last is not None and spawn.last.is_alive()  # answered all the same
    assert stale.snapshot is not None and stale.snapshot.models["m"].cost == 1.0
    assert stale.up
    release.set()
    wait_for(lambda: refresher.view.version == first.version + 1, 5, "the refresh")
    assert refresher.view.snapshot is not None
    assert refresher.view.snapshot.models["m"].cost == 2.0
    assert len(calls) == 2


def test_only_the_first_scrape_waits_and_never_past_its_budget() -> None:
    clock, fetching, release = FakeClock(T0), threading.Event(), threading.Event()

    def blocked(account: AccountConfig, window: PeriodWindow, permit: object) -> FetchResult:
        fetching.set()
        assert release.wait(10)
        return FetchResult(UsageSnapshot(window), 1, 1)

    spawn = ThreadSpawn()
    refresher = make_refresher(blocked, clock, spawn=spawn)
    # Past its budget, the first scrape answers while the refresh is still running.
    view = refresher.get(wait=0.01)
    assert fetching.is_set() and not release.is_set()
    assert view.snapshot is None and not view.attempted
    # Within its budget, it waits for the refresh and serves what it brought.
    waited: list[AccountView] = []
    scrape = threading.Thread(target=lambda: waited.append(refresher.get(wait=30)))
    scrape.start()
    release.set()
    scrape.join(30)
    assert waited and waited[0].attempted and waited[0].snapshot is not None
    # Once attempted, a scrape never waits, whatever its budget: the next refresh
    # is blocked again, and the scrape still answers with the data it has.
    release.clear()
    clock.advance(301)
    assert refresher.get(wait=3600).snapshot is waited[0].snapshot
    release.set()
    spawn.join()


def test_concurrent_scrapes_share_one_refresh() -> None:
    clock, gate = FakeClock(T0), threading.Event()
    calls: list[int] = []

    def fetch(account: AccountConfig, window: PeriodWindow, permit: object) -> FetchResult:
        calls.append(1)
        gate.wait(5)
        return FetchResult(UsageSnapshot(window, models={"m": ModelTotals(*(1.0,) * 5)}), 1, 1)

    refresher = make_refresher(fetch, clock, spawn=ThreadSpawn())
    barrier = threading.Barrier(32)
    views = []

    def scrape() -> None:
        barrier.wait()
        views.append(refresher.get(wait=5))

    threads = [threading.Thread(target=scrape) for _ in range(32)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(calls) == 1, 5, "the refresh")
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1
    assert len(views) == 32 and all(v.snapshot is not None for v in views)


def test_exponential_backoff_after_failures_whatever_the_scrape_rate() -> None:
    clock, fetch = FakeClock(T0), CountingFetch()
    fetch.error = UpstreamError("server_error", "HTTP 500")
    telemetry = Telemetry(CollectorRegistry(), ["acme"])
    refresher = make_refresher(fetch, clock, ttl=1, telemetry=telemetry)
    attempts_at = []
    for _ in range(400):  # scrapes every second for 400 s
        before = fetch.calls
        refresher.get()
        if fetch.calls > before:
            attempts_at.append(clock.seconds)
        clock.advance(1)
    gaps = [b - a for a, b in zip(attempts_at, attempts_at[1:], strict=False)]
    assert gaps == [10, 20, 40, 80, 160]
    assert refresher.view.up is False and refresher.view.last_error == "HTTP 500"
    failures = telemetry.refresh_failures.labels("acme", "server_error")._value.get()
    assert failures == len(attempts_at)


def test_auth_failures_back_off_too() -> None:
    clock, fetch = FakeClock(T0), CountingFetch()
    fetch.error = UpstreamError("auth", "HTTP 401")
    refresher = make_refresher(fetch, clock, ttl=1)
    for _ in range(9):
        refresher.get()
        clock.advance(1)
    assert fetch.calls == 1
    clock.advance(BACKOFF_BASE_SECONDS)
    refresher.get()
    assert fetch.calls == 2


def test_retry_after_is_honoured() -> None:
    clock, fetch = FakeClock(T0), CountingFetch()
    fetch.error = UpstreamError("rate_limited", "429", retry_after=120)
    refresher = make_refresher(fetch, clock, ttl=1)
    refresher.get()
    fetch.error = None
    clock.advance(119)
    refresher.get()
    assert fetch.calls == 1
    clock.advance(1)
    assert refresher.get().up and fetch.calls == 2


def test_success_after_failures_resets_the_backoff_and_keeps_serving() -> None:
    clock, fetch = FakeClock(T0), CountingFetch()
    refresher = make_refresher(fetch, clock, ttl=10)
    good = refresher.get()
    fetch.error = UpstreamError("invalid_response", "bad JSON")
    clock.advance(11)
    failed = refresher.get()
    assert not failed.up and failed.snapshot == good.snapshot  # last good data served
    assert failed.last_success == good.last_success
    fetch.error = None
    clock.advance(BACKOFF_BASE_SECONDS)
    assert refresher.get().up
    fetch.error = UpstreamError("server_error", "HTTP 502")
    clock.advance(11)
    refresher.get()
    calls = fetch.calls
    clock.advance(BACKOFF_BASE_SECONDS)  # first failure again: the base delay
    refresher.get()
    assert fetch.calls == calls + 1


def test_hourly_cap_is_never_exceeded() -> None:
    clock, fetch = FakeClock(T0), CountingFetch()
    refresher = make_refresher(fetch, clock, ttl=1, cap=3)
    for _ in range(3599):
        refresher.get()
        clock.advance(1)
    assert fetch.calls == 3
    clock.advance(5)
    refresher.get()
    assert fetch.calls == 4


# -- the client, against httpx's MockTransport ---------------------------------------

def test_each_refresh_gives_freed_memory_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import exporter.live.scheduler

    clock, fetch = FakeClock(T0), CountingFetch()
    refresher = make_refresher(fetch, clock, ttl=10)
    published: list[int] = []  # the version served when memory is given back

    def release() -> bool:
        published.append(refresher.view.version)
        return True

    monkeypatch.setattr(exporter.live.scheduler, "release_free_memory", release)
    refresher.get()
    assert published == [1]  # after the new data is served
    fetch.error = UpstreamError("server_error", "boom")
    clock.advance(11)
    refresher.get()
    assert published == [1, 2]  # failed refreshes too


def test_freed_memory_is_given_back_with_glibc_only() -> None:
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert release_free_memory() is glibc
