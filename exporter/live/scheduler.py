"""The refresh scheduler: one fetch shared by all scrapes, per account, with back-off and cap.

Scrapes never call upstream themselves. Within the TTL they are answered from
memory. Past the TTL, the first scrape starts one background refresh and every
scrape is answered at once with the data already held (stale-while-revalidate);
only the very first scrape of an account, with nothing to serve yet, waits for
the refresh, and only up to the time the caller can afford.

Whatever the number of scrapers and replicas' scrape rates, an account sees at
most one request in flight, none during a back-off, and never more than the
hourly cap. The cap counts calls, and a refresh that needs k calls (an account
whose period is fetched in pieces, see :mod:`exporter.upstream.pieces`) starts only when
the cap has room for all k: it runs whole or waits. Refreshes are paced so that
the hourly budget lasts the hour (:func:`refresh_interval`), and the accounts'
refreshes are spread over the TTL rather than fired together: each account keeps
its own cadence of one TTL (:func:`next_due`), which neither the scrape interval
nor the wait for a refresh slot (:func:`limit_concurrency`) makes drift.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from exporter.core.account import AccountConfig
from exporter.core.billing import AccountPeriod, PeriodChoice
from exporter.core.errors import FailureReason, UpstreamError
from exporter.core.ledger import PeriodLedger
from exporter.core.period import (
    PeriodWindow,
    monotonic_clock,
    wall_clock,
)
from exporter.core.values import AccountView
from exporter.live.memory import release_free_memory
from exporter.metrics.own import Telemetry
from exporter.upstream.pieces import PieceFetcher, WindowFetch
from exporter.upstream.politeness import HOUR, RequestCap, backoff_delay

log = logging.getLogger("exporter.scheduler")


Spawn = Callable[[Callable[[], None]], None]


def refresh_interval(ttl: float, cap: int, steady_calls: int = 1, recheck_calls: int = 1,
                     ) -> float:
    """How often an account can be refreshed: the TTL, or longer when the cap says so.

    A refresh costs *steady_calls* calls, and once a day a recheck costs
    *recheck_calls* (see :mod:`exporter.upstream.pieces`): within any hour, at most one
    recheck and as many steady refreshes as the rest of the cap allows. Spread
    evenly, the budget lasts the whole hour, instead of being spent in the first
    minutes and leaving the data to age until the hour ends.
    """
    budget = cap - max(0, recheck_calls - steady_calls)
    if budget < steady_calls:
        return HOUR  # the cap cannot hold a recheck: refreshes wait for room
    return max(ttl, HOUR * steady_calls / budget)


def spawn_thread(work: Callable[[], None]) -> None:
    """Run *work* in a daemon thread (the default way refreshes run)."""
    threading.Thread(target=work, name="refresh", daemon=True).start()


def next_due(interval: float, started: float, due: float | None, share: float) -> float:
    """When the refresh after one that started at *started* is due (clock times).

    The first data (*due* None) is fresh for *share* of the interval: the accounts'
    first refreshes land together, and a random share spreads the later ones over
    the interval. After that each account keeps its cadence, one interval after the
    time the refresh was due, whether the scrape that found it due came soon after
    or a scrape interval later, and however long it waited for a slot: otherwise
    each refresh would add that lag, and the account be refreshed less than once per
    interval. A refresh more than half an interval late (no scrape for a while, a
    back-off, a full cap) starts a new cadence from its start.
    """
    if due is None:
        return started + interval * share
    if started - due < interval / 2:
        return due + interval
    return started + interval


def limit_concurrency(spawn: Spawn, limit: int) -> Spawn:
    """*spawn*, but at most *limit* of the works it starts run at the same time.

    Many accounts start their first refreshes together: without a bound, as
    many calls would reach upstream at once (and as many responses be parsed
    on two cores). The others wait in line, oldest first, and no thread waits
    with them: a work that ends spawns the next in line in its slot. A work
    spawned by a running work goes first (a team's first read starts the
    usages' refresh that waited for it: that account's data comes next, not
    after every other account's team read). Scrapes are answered meanwhile.
    """
    lock = threading.Lock()
    waiting: deque[Callable[[], None]] = deque()
    running = 0
    local = threading.local()  # .working: this thread runs one of the works

    def run(work: Callable[[], None]) -> None:
        nonlocal running
        outer = getattr(local, "working", False)
        local.working = True
        try:
            work()
        finally:
            local.working = outer
            with lock:
                following = waiting.popleft() if waiting else None
                if following is None:
                    running -= 1
            if following is not None:  # the slot passes on
                spawn(lambda: run(following))

    def spawn_limited(work: Callable[[], None]) -> None:
        nonlocal running
        with lock:
            if running >= limit:
                if getattr(local, "working", False):
                    waiting.appendleft(work)
                else:
                    waiting.append(work)
                return
            running += 1
        spawn(lambda: run(work))

    return spawn_limited


@dataclass(frozen=True)
class RefreshPolicy:
    """How often one account may be refreshed, and how much of it is served."""

    ttl: float = 300.0
    period: PeriodChoice = "month"
    anchor_day: int = 1
    max_requests_per_hour: int = 60
    max_models: int = 500
    max_users: int = 1000


class AccountRefresher:
    """Keeps one account's served data fresh enough, never overloading upstream."""

    def __init__(self, account: AccountConfig, fetch: WindowFetch, telemetry: Telemetry,
                 policy: RefreshPolicy, *,
                 clock: Callable[[], float] = monotonic_clock,
                 wall: Callable[[], float] = wall_clock,
                 spawn: Spawn = spawn_thread,
                 rng: random.Random | None = None,
                 period: AccountPeriod | None = None) -> None:
        self.account = account
        self._pieces = PieceFetcher(fetch)
        self._ttl = policy.ttl
        self._telemetry = telemetry
        # Which period the counters run over; with billing/auto, told by the team refresher.
        self.period = period or AccountPeriod(policy.period, policy.anchor_day)
        # The calls an hour that other readers of the account (the team's endpoints) take
        # from the shared cap: the pacing of usages leaves them room.
        self.shared_per_hour: Callable[[], int] = lambda: 0
        self._clock = clock
        self._wall = wall
        self._spawn = spawn
        self._rng = rng or random.Random()
        self._fresh_until: float | None = None  # clock time; None: never fetched
        self._cap = RequestCap(policy.max_requests_per_hour, clock)
        self._ledger = PeriodLedger(policy.max_models, policy.max_users)
        self._lock = threading.Lock()
        self._in_flight = False
        self._first_done = threading.Event()
        self._failures = 0
        self._not_before = 0.0  # clock time before which no refresh may start
        self._view = AccountView(account)

    @property
    def view(self) -> AccountView:
        """The data currently served, without triggering anything."""
        return self._view

    @property
    def cap(self) -> RequestCap:
        """The account's hourly cap of upstream calls (the team refresher shares it)."""
        return self._cap

    def next_calls(self) -> int:
        """The calls the next refresh of usages will make: what other callers sharing
        the cap leave free for it."""
        window = self.period.window(datetime.fromtimestamp(self._wall(), timezone.utc))
        if window is None:
            return 1
        return min(self._pieces.planned_calls(window), self._cap.limit)

    @property
    def days_per_piece(self) -> int | None:
        """The split learnt for this account (None: one call for the whole period)."""
        return self._pieces.days

    def get(self, wait: float = 0.0) -> AccountView:
        """The view to serve for a scrape; starts a background refresh when one is due.

        Only while nothing has been fetched yet does this wait, at most *wait*
        seconds, for the refresh it started or joined.
        """
        self.maybe_refresh()
        self.wait_first_attempt(wait)
        return self._view

    def wait_first_attempt(self, wait: float) -> None:
        """Wait, at most *wait* seconds, until the first refresh has been attempted."""
        if not self._first_done.is_set() and wait > 0:
            self._first_done.wait(wait)

    def due(self, now: float) -> bool:
        """Whether a refresh may be due at *now*; a hint read without the lock.

        A scrape of many accounts asks this of each first, and takes the lock of
        only those that may be due (:meth:`maybe_refresh` decides).
        """
        fresh_until = self._fresh_until
        return not self._in_flight and now >= self._not_before and \
            (fresh_until is None or now >= fresh_until)

    def due_since(self) -> float:
        """The clock time from which a refresh is due (-inf: never fetched); a scrape
        starts the refreshes of the accounts due the longest first."""
        fresh_until = self._fresh_until
        return max(-math.inf if fresh_until is None else fresh_until, self._not_before)

    def maybe_refresh(self) -> bool:
        """Start a refresh if the data is past its TTL and upstream may be called now."""
        with self._lock:
            if self._in_flight:
                return False
            now = self._clock()
            if self._fresh_until is not None and now < self._fresh_until:
                return False
            if now < self._not_before:
                return False
            started_wall = self._wall()
            window = self.period.window(datetime.fromtimestamp(started_wall, timezone.utc))
            if window is None:  # the billing period is being read: its refresh calls again
                return False
            # The refresh runs whole or not at all: room for every call it plans.
            needed = min(self._pieces.planned_calls(window), self._cap.limit)
            if not self._cap.has_room(needed):
                return False
            self._in_flight = True
            due = self._fresh_until
        self._spawn(lambda: self._refresh(window, started_wall, due))
        return True

    def _refresh(self, window: PeriodWindow, started_wall: float, due: float | None) -> None:
        started = self._clock()
        fields: dict[str, object] = {"account": self.account.name,
                  "window": f"{window.start.isoformat()}/{window.end.isoformat()}"}
        try:
            result = self._pieces.fetch(self.account, window, self._cap.try_acquire)
            outcome = self._ledger.apply(result.snapshot)
        except UpstreamError as exc:
            self._fail(exc.reason, str(exc), exc.retry_after, started_wall, fields, started)
        except Exception as exc:  # a bug must not kill refreshes for good
            log.exception("refresh crashed", extra={"fields": fields})
            self._fail(FailureReason.INTERNAL_ERROR, f"internal error: {type(exc).__name__}",
                       None, started_wall, fields, started)
        else:
            if outcome.decreases:
                self._telemetry.count_decreases(self.account.name, outcome.decreases)
            # The cap is shared: the calls others make in an hour are not usages'.
            interval = refresh_interval(self._ttl, self._cap.limit - self.shared_per_hour(),
                                        *self._pieces.steady_calls(window))
            if interval > self._ttl and interval != self._view.refresh_interval:
                log.warning("the TTL cannot be met with the hourly cap", extra={"fields": {
                    "account": self.account.name, "refresh_interval_seconds": interval,
                    "days_per_piece": self._pieces.days}})
            # The first data of every account arrives at start-up, together: a random
            # share of the first interval spreads the accounts' later refreshes over it.
            share = self._rng.uniform(0.5, 1.0) if due is None else 1.0
            # Paced by the cap, the interval spends the whole budget: it counts from the
            # end of this refresh, which leaves the calls nobody planned (a split learnt,
            # the team found) some room; paced by the TTL, the account keeps its cadence.
            fresh_until = self._clock() + interval * share if interval > self._ttl else \
                next_due(interval, started, due, share)
            with self._lock:
                self._failures = 0
                self._not_before = 0.0
                self._view = AccountView(
                    self.account, self._view.version + 1, outcome.snapshot, outcome.folded,
                    up=True, attempted=True, last_attempt=started_wall,
                    last_success=started_wall, last_error=None, refresh_interval=interval,
                    period_end=self._period_end(window))
                self._fresh_until = fresh_until
                self._in_flight = False
            log.info("refresh", extra={"fields": {
                **fields, "status": "ok", "requests": result.requests,
                "days_per_piece": self._pieces.days, "bytes": result.body_bytes,
                "duration_seconds": round(self._clock() - started, 3)}})
        finally:
            self._first_done.set()
            # The response is dropped by now: give what it took back to the system.
            release_free_memory()

    def _period_end(self, window: PeriodWindow) -> float | None:
        """The end of the period *window* belongs to (its start is the window's)."""
        period = self.period.period(window.end)
        return period.end.timestamp() if period and period.start == window.start else None

    def _fail(self, reason: FailureReason, message: str, retry_after: float | None,
              started_wall: float, fields: dict[str, object], started: float) -> None:
        self._telemetry.count_failure(self.account.name, reason)
        with self._lock:
            self._failures += 1
            delay = backoff_delay(self._failures, self._rng, retry_after)
            self._not_before = self._clock() + delay
            previous = self._view
            self._view = AccountView(
                self.account, previous.version + 1, previous.snapshot, previous.folded,
                up=False, attempted=True, last_attempt=started_wall,
                last_success=previous.last_success, last_error=message,
                refresh_interval=previous.refresh_interval, period_end=previous.period_end)
            self._in_flight = False
        log.warning("refresh failed", extra={"fields": {
            **fields, "status": "error", "reason": reason.value, "error": message,
            "retry_in_seconds": round(delay, 1),
            "duration_seconds": round(self._clock() - started, 3)}})
