"""One fetch shared by all scrapes: per-account cache, back-off and request cap.

Scrapes never call upstream themselves. Within the TTL they are answered from
memory. Past the TTL, the first scrape starts one background refresh and every
scrape is answered at once with the data already held (stale-while-revalidate);
only the very first scrape of an account, with nothing to serve yet, waits for
the refresh, and only up to the time the caller can afford.

Whatever the number of scrapers and replicas' scrape rates, an account sees at
most one request in flight, none during a back-off, and never more than the
hourly cap.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cachetools import TTLCache

from exporter.client import FetchResult, UpstreamError
from exporter.config import AccountConfig
from exporter.ledger import PeriodLedger
from exporter.memory import release_free_memory
from exporter.period import (
    PeriodKind,
    PeriodWindow,
    current_window,
    monotonic_clock,
    wall_clock,
)
from exporter.snapshot import UsageSnapshot
from exporter.telemetry import Telemetry

log = logging.getLogger("exporter.cache")

# Back-off after a failed refresh: 10 s, 20 s, 40 s ... capped at 30 min, each
# multiplied by a random factor in [0.5, 1] so that replicas spread out.
BACKOFF_BASE_SECONDS = 10.0
BACKOFF_CAP_SECONDS = 1800.0
HOUR = 3600.0

Fetch = Callable[[AccountConfig, PeriodWindow, Callable[[], bool]], FetchResult]
Spawn = Callable[[Callable[[], None]], None]


def spawn_thread(work: Callable[[], None]) -> None:
    """Run *work* in a daemon thread (the default way refreshes run)."""
    threading.Thread(target=work, name="refresh", daemon=True).start()


@dataclass(frozen=True)
class AccountView:
    """What a scrape sees of one account; immutable, so it can be read without locks."""

    account: AccountConfig
    version: int = 0
    snapshot: UsageSnapshot | None = None
    folded: Mapping[str, int] = field(default_factory=dict)
    up: bool = False
    attempted: bool = False
    last_attempt: float | None = None  # wall-clock seconds
    last_success: float | None = None
    last_error: str | None = None


class RequestCap:
    """At most *limit* upstream requests in any sliding hour."""

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._clock = clock
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._sent and now - self._sent[0] >= HOUR:
            self._sent.popleft()

    def try_acquire(self) -> bool:
        """Take one request from the budget, or say no."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            if len(self._sent) >= self._limit:
                return False
            self._sent.append(now)
            return True

    def has_room(self) -> bool:
        """Whether a request would be allowed now (without taking it)."""
        with self._lock:
            self._expire(self._clock())
            return len(self._sent) < self._limit


class AccountRefresher:
    """Keeps one account's served data fresh enough, never overloading upstream."""

    def __init__(self, account: AccountConfig, fetch: Fetch, telemetry: Telemetry, *,
                 ttl: float, period: PeriodKind = "month", anchor_day: int = 1,
                 max_requests_per_hour: int = 60, max_models: int = 500,
                 max_users: int = 1000,
                 clock: Callable[[], float] = monotonic_clock,
                 wall: Callable[[], float] = wall_clock,
                 spawn: Spawn = spawn_thread,
                 rng: random.Random | None = None) -> None:
        self.account = account
        self._fetch = fetch
        self._telemetry = telemetry
        self._period: PeriodKind = period
        self._anchor_day = anchor_day
        self._clock = clock
        self._wall = wall
        self._spawn = spawn
        self._rng = rng or random.Random()
        self._fresh: TTLCache[str, bool] = TTLCache(maxsize=1, ttl=ttl, timer=clock)
        self._cap = RequestCap(max_requests_per_hour, clock)
        self._ledger = PeriodLedger(max_models, max_users)
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

    def maybe_refresh(self) -> bool:
        """Start a refresh if the data is past its TTL and upstream may be called now."""
        with self._lock:
            if self._in_flight or "usage" in self._fresh:
                return False
            now = self._clock()
            if now < self._not_before:
                return False
            if not self._cap.has_room():
                return False
            self._in_flight = True
        self._spawn(self._refresh)
        return True

    def _refresh(self) -> None:
        started_wall = self._wall()
        started = self._clock()
        window = current_window(datetime.fromtimestamp(started_wall, timezone.utc),
                                self._period, self._anchor_day)
        fields: dict[str, object] = {"account": self.account.name,
                  "window": f"{window.start.isoformat()}/{window.end.isoformat()}"}
        try:
            result = self._fetch(self.account, window, self._cap.try_acquire)
            outcome = self._ledger.apply(result.snapshot)
        except UpstreamError as exc:
            self._fail(exc.reason, str(exc), exc.retry_after, started_wall, fields, started)
        except Exception as exc:  # a bug must not kill refreshes for good
            log.exception("refresh crashed", extra={"fields": fields})
            self._fail("internal_error", f"internal error: {type(exc).__name__}", None,
                       started_wall, fields, started)
        else:
            if outcome.decreases:
                self._telemetry.decreases.labels(self.account.name).inc(outcome.decreases)
            with self._lock:
                self._failures = 0
                self._not_before = 0.0
                self._view = AccountView(
                    self.account, self._view.version + 1, outcome.snapshot, outcome.folded,
                    up=True, attempted=True, last_attempt=started_wall,
                    last_success=started_wall, last_error=None)
                self._fresh["usage"] = True
                self._in_flight = False
            log.info("refresh", extra={"fields": {
                **fields, "status": "ok", "requests": result.requests,
                "bytes": result.body_bytes,
                "duration_seconds": round(self._clock() - started, 3)}})
        finally:
            self._first_done.set()
            # The response is dropped by now: give what it took back to the system.
            release_free_memory()

    def _fail(self, reason: str, message: str, retry_after: float | None, started_wall: float,
              fields: dict[str, object], started: float) -> None:
        self._telemetry.refresh_failures.labels(self.account.name, reason).inc()
        with self._lock:
            self._failures += 1
            delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (self._failures - 1))
            delay *= self._rng.uniform(0.5, 1.0)
            if retry_after is not None:
                delay = max(delay, retry_after)
            self._not_before = self._clock() + delay
            previous = self._view
            self._view = AccountView(
                self.account, previous.version + 1, previous.snapshot, previous.folded,
                up=False, attempted=True, last_attempt=started_wall,
                last_success=previous.last_success, last_error=message)
            self._in_flight = False
        log.warning("refresh failed", extra={"fields": {
            **fields, "status": "error", "reason": reason, "error": message,
            "retry_in_seconds": round(delay, 1),
            "duration_seconds": round(self._clock() - started, 3)}})
