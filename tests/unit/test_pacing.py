"""Pacing at scale: 1,000 accounts in one process, a 5-minute TTL and a scrape every 30 s.

Each account is refreshed once per TTL, none starves and none drifts, on a simulated
clock (:class:`Simulation`: no sleeps); the refresh slots hand over oldest first; the
first scrape after start-up answers within its wait with the accounts that are ready.
The scheduler of one account is tested in test_scheduler.py.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from exporter.config.settings import Settings
from exporter.core.account import AccountConfig
from exporter.core.period import PeriodWindow
from exporter.core.values import FetchResult, ModelTotals, UsageSnapshot
from exporter.live.exporter import UsageExporter
from exporter.live.scheduler import (
    AccountRefresher,
    RefreshPolicy,
    Spawn,
    limit_concurrency,
    next_due,
    spawn_thread,
)
from exporter.live.service import MAX_CONCURRENT_REFRESHES, build_exporter, concurrent_refreshes
from exporter.metrics.own import Telemetry
from testkit.clock import FakeClock
from testkit.doubles import T0, MaxRandom
from testkit.waiting import wait_for

ACCOUNTS = 1000
TTL = 300.0
SCRAPE = 30.0  # Prometheus' scrape interval (each scrape up to 2 s late)
REFRESH = 1.0  # one refresh's time: a slow upstream (1,000 accounts: 62.5 s in 16 slots)


def accounts(count: int) -> list[AccountConfig]:
    return [AccountConfig(name=f"a{index:04d}", api_key="key-123",
                          api_secret=SecretStr("s3cr3t")) for index in range(count)]


class Simulation:
    """Refreshes on a simulated clock, in the test's thread.

    A spawned work starts when it is spawned and ends REFRESH later; works run in
    the order they end, the clock reading their start until their fetch moves it to
    their end. So a refresh starts, calls and ends at its own times, and a slot of
    the pool is handed over when the work in it ends.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.order = itertools.count()
        self.pending: list[tuple[float, int, float, Callable[[], None]]] = []
        self.fetches: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def monotonic(self) -> float:
        return 1000.0 + self.seconds

    def wall(self) -> float:
        return T0 + self.seconds

    def spawn(self, work: Callable[[], None]) -> None:
        start = self.seconds
        heapq.heappush(self.pending, (start + REFRESH, next(self.order), start, work))

    def fetch(self, account: AccountConfig, window: PeriodWindow,
              permit: Callable[[], bool] | None) -> FetchResult:
        assert permit is not None and permit(), "the hourly cap refused a refresh"
        start = self.seconds
        self.seconds = start + REFRESH
        self.fetches[account.name].append((start, self.seconds))
        totals = ModelTotals(*(float(len(self.fetches[account.name])),) * 5)
        return FetchResult(UsageSnapshot(window, models={"m": totals}), 1, 1)

    def run_until(self, seconds: float) -> None:
        while self.pending and self.pending[0][0] <= seconds:
            _, _, self.seconds, work = heapq.heappop(self.pending)
            work()
        self.seconds = seconds


def data_side(refreshers: list[AccountRefresher], clock: Callable[[], float]) -> UsageExporter:
    """The exporter's data side around *refreshers* (no team: the calendar month)."""
    return dataclasses.replace(build_exporter(Settings()), refreshers=refreshers, clock=clock)


def simulated_exporter(sim: Simulation) -> UsageExporter:
    names = accounts(ACCOUNTS)
    telemetry = Telemetry(CollectorRegistry(), [a.name for a in names])
    spawn = limit_concurrency(sim.spawn, concurrent_refreshes(ACCOUNTS))
    refreshers = [AccountRefresher(account, sim.fetch, telemetry, RefreshPolicy(ttl=TTL),
                                   clock=sim.monotonic, wall=sim.wall, spawn=spawn,
                                   rng=random.Random(index))
                  for index, account in enumerate(names)]
    # The team's calls an hour at the defaults (4 reads of 5 calls): usages leave them room.
    for refresher in refreshers:
        refresher.shared_per_hour = lambda: 20
    return data_side(refreshers, sim.monotonic)


def test_a_thousand_accounts_are_each_refreshed_once_per_ttl() -> None:
    sim, late = Simulation(), random.Random(23)
    exporter = simulated_exporter(sim)
    exporter.start()
    watched = (2 * TTL, 7 * TTL)  # after start-up, five TTLs
    ready_at = None
    for scrape in range(int(watched[1] / SCRAPE) + 1):
        sim.run_until(scrape * SCRAPE + late.uniform(0, 2))
        exporter.prepare_scrape(0)
        if ready_at is None and exporter.ready():
            ready_at = sim.seconds
    sim.run_until(watched[1])

    # Start-up: the 1,000 first refreshes queue for the 16 slots, and take their time.
    slots = concurrent_refreshes(ACCOUNTS)
    assert slots == 16 and ready_at is not None
    assert ready_at <= ACCOUNTS * REFRESH / slots + SCRAPE + 2
    assert all(view.up for view in exporter.views())
    # Once per TTL, +-10% on average, and each account within one refresh of it (the
    # count over five TTLs depends on where its cadence falls against their bounds).
    counts = [sum(watched[0] <= start < watched[1] for start, _ in fetches)
              for fetches in sim.fetches.values()]
    assert len(counts) == ACCOUNTS
    assert abs(sum(counts) / len(counts) / 5 - 1) <= 0.1
    assert min(counts) >= 4 and max(counts) <= 6
    # No account starves, none drifts: after its first data, the gaps between an
    # account's refreshes are one TTL, give or take a scrape interval and a slot's wait.
    gaps = [b[0] - a[0] for fetches in sim.fetches.values()
            for a, b in itertools.pairwise(fetches[1:])]
    assert min(gaps) >= TTL - SCRAPE - 10 and max(gaps) <= TTL + SCRAPE + 10
    assert abs(sum(gaps) / len(gaps) - TTL) <= 0.01 * TTL
    # The first data spread the accounts' cadences over half the TTL and more: a scrape
    # finds a fraction of them due, not all of them at once.
    starts = sorted(start for fetches in sim.fetches.values() for start, _ in fetches
                    if start >= watched[0])
    per_scrape = [sum(1 for _ in group) for _, group in
                  itertools.groupby(starts, key=lambda start: start // SCRAPE)]
    assert max(per_scrape) <= ACCOUNTS / 4, per_scrape
    # Never more refreshes at once than the pool's slots.
    ends = sorted(end for fetches in sim.fetches.values() for _, end in fetches)
    running = most = 0
    for start, _ in sorted(f for fetches in sim.fetches.values() for f in fetches):
        running += 1
        while ends and ends[0] <= start:
            ends.pop(0)
            running -= 1
        most = max(most, running)
    assert most == slots


def test_refreshes_keep_their_cadence_whenever_the_scrape_comes() -> None:
    # The first data: a share of the interval from its start.
    assert next_due(300, 1000, None, 0.5) == 1150
    # Late by a scrape interval or a wait for a slot: the next one is due on time.
    assert next_due(300, 1029, 1000, 1.0) == 1300
    # Late by half an interval or more (no scrapes, a back-off): a new cadence.
    assert next_due(300, 1150, 1000, 1.0) == 1450


def test_a_scrape_starts_the_accounts_due_the_longest_first() -> None:
    clock, fetched, spawned = FakeClock(T0), [], []
    names = accounts(3)
    telemetry = Telemetry(CollectorRegistry(), [a.name for a in names])

    def fetch(account: AccountConfig, window: PeriodWindow,
              permit: Callable[[], bool] | None) -> FetchResult:
        fetched.append(account.name)
        return FetchResult(UsageSnapshot(window), 1, 1)

    refreshers = [AccountRefresher(account, fetch, telemetry, RefreshPolicy(ttl=TTL),
                                   clock=clock.monotonic, wall=clock.wall,
                                   spawn=spawned.append, rng=MaxRandom()) for account in names]
    for refresher in reversed(refreshers):  # a0002's first data first: it is due first
        refresher.maybe_refresh()
        spawned.pop()()
        clock.advance(60)
    clock.advance(TTL)  # all three due
    fetched.clear()
    data_side(refreshers, clock.monotonic).prepare_scrape(0)
    for work in spawned:
        work()
    assert fetched == ["a0002", "a0001", "a0000"]


def test_waiting_refreshes_take_the_slots_in_turn_without_a_thread() -> None:
    started: list[Callable[[], None]] = []  # what the pool spawned, run by hand
    ran: list[str] = []
    limited = limit_concurrency(started.append, 2)
    for name in "abcde":
        limited(lambda name=name: ran.append(name))
    assert len(started) == 2  # c, d and e wait, with no thread of their own
    while started:
        started.pop(0)()  # a work that ends hands its slot to the oldest waiting
        assert len(started) <= 2
    assert ran == list("abcde")


def test_a_work_spawned_by_a_running_work_goes_first() -> None:
    """A team's first read starts its usages' refresh: that account's data comes next,
    before the other accounts' team reads waiting for a slot."""
    started: list[Callable[[], None]] = []
    ran: list[str] = []
    limited = limit_concurrency(started.append, 1)

    def team() -> None:
        ran.append("team")
        limited(lambda: ran.append("usages"))

    limited(team)
    limited(lambda: ran.append("next team"))
    while started:
        started.pop(0)()
    assert ran == ["team", "usages", "next team"]


def test_the_pool_grows_with_the_accounts_from_today_s_four() -> None:
    assert [concurrent_refreshes(n) for n in (1, 10, 100, 256, 257, 500, 1000, 10000)] == [
        MAX_CONCURRENT_REFRESHES, 4, 4, 4, 5, 8, 16, 16]


def test_the_first_scrape_answers_within_its_wait_with_the_accounts_ready() -> None:
    """1,000 accounts start together; the 41st and later are slow: the first scrape
    waits at most its budget, then answers with the 40 ready (real threads)."""
    gate, slow = threading.Event(), {f"a{index:04d}" for index in range(40, ACCOUNTS)}
    names = accounts(ACCOUNTS)
    telemetry = Telemetry(CollectorRegistry(), [a.name for a in names])

    def fetch(account: AccountConfig, window: PeriodWindow,
              permit: Callable[[], bool] | None) -> FetchResult:
        if account.name in slow:
            assert gate.wait(30)
        return FetchResult(UsageSnapshot(window, models={"m": ModelTotals(*(1.0,) * 5)}), 1, 1)

    spawn: Spawn = limit_concurrency(spawn_thread, concurrent_refreshes(ACCOUNTS))
    refreshers = [AccountRefresher(account, fetch, telemetry, RefreshPolicy(ttl=TTL),
                                   spawn=spawn) for account in names]
    exporter = data_side(refreshers, time.monotonic)
    try:
        exporter.start()
        wait_for(lambda: sum(v.attempted for v in exporter.views()) == 40, 10,
                 "the 40 quick accounts")
        began = time.monotonic()
        exporter.prepare_scrape(0.3)
        waited = time.monotonic() - began
        assert 0.25 <= waited < 1.3
        views = exporter.views()
        assert [v.account.name for v in views if v.attempted] == [
            f"a{index:04d}" for index in range(40)]
        assert all(v.up and v.snapshot is not None for v in views[:40])
    finally:
        gate.set()
    wait_for(exporter.ready, 30, "every account's first refresh")
    # After the first data of every account, a scrape waits for nothing.
    began = time.monotonic()
    exporter.prepare_scrape(10)
    assert time.monotonic() - began < 1
