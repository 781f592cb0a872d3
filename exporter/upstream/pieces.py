"""Fetching a period in day-aligned pieces, and remembering how, per account.

The API gateway refuses responses above 6 MB (HTTP 413): a large studio's
month-to-date can be too large for one call. The period is then fetched as
pieces of whole UTC days (:meth:`PeriodWindow.day_pieces`), whose sums add up to
the whole exactly, and a :class:`PieceFetcher` remembers, per account:

* **the split**: how many days per piece worked (1, 2, 4, 8 or 16 days, cut
  from the period start, so that coarser pieces are unions of finer ones). The
  next refresh starts with it; fewer pieces are tried again only once a day
  (:data:`RECHECK_SECONDS`), not at every refresh. The split outlives the
  period: the next month is as large as this one, and while its window is
  shorter than a piece it is fetched in one call anyway.
* **the sums of closed pieces**: a piece wholly in the past, fetched at least
  :data:`SETTLE_SECONDS` after its end, is not fetched again at every
  refresh: upstream's daily buckets of past days do not change but for late
  events, which the settling delay covers, and for revisions (a refund). Every
  piece is fetched again once an hour (:data:`REFETCH_SECONDS`), so a revision
  of a past day shows within the hour, and replicas disagree at most that long.
  So a refresh of a split account costs one call (the open piece) most of the
  time, and the number of pieces once an hour.

An account that needs no split costs exactly one call per refresh, as before.

:func:`fetch_day_pieces` is the one loop that cuts a window finer when the
gateway refuses a piece; the live :class:`PieceFetcher` and the backfill both
fetch through it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from exporter.core.account import AccountConfig
from exporter.core.errors import FailureReason, InvalidResponse, ResponseTooLarge, UpstreamError
from exporter.core.period import PeriodWindow, describe_window
from exporter.core.values import FetchResult, UsageSnapshot
from exporter.upstream.client import RequestPermit
from exporter.upstream.summing import merge

log = logging.getLogger("exporter.split")

T = TypeVar("T")

WindowFetch = Callable[[AccountConfig, PeriodWindow, "RequestPermit | None"], FetchResult]

# Fewer pieces are tried this often,
RECHECK_SECONDS = 86400.0
# and every closed piece is fetched again this often (a revision of a past day).
REFETCH_SECONDS = 3600.0
# A closed piece fetched this long after its end is kept until the next recheck:
# upstream may still be adding late events to the last minutes of a day.
SETTLE_SECONDS = 3600.0


def finer_split(days: int | None, piece: PeriodWindow) -> int | None:
    """The next smaller days-per-piece after *piece* was too large, or None below a day.

    A power of two below both the current split and the failed piece's length,
    so that the pieces already fetched stay unions of the finer ones.
    """
    limit = piece.days if days is None else min(days, piece.days)
    if limit <= 1:
        return None
    finer = 1
    while finer * 2 < limit:
        finer *= 2
    return finer


def fetch_day_pieces(fetch_piece: Callable[[PeriodWindow], T], window: PeriodWindow,
                     days: int | None, *, account: str,
                     on_finer: Callable[[int], None] | None = None) -> tuple[list[T], int | None]:
    """Fetch *window* as pieces of *days* whole UTC days (None: in one call), in time order.

    When the gateway refuses a piece as too large (*fetch_piece* raises
    :class:`ResponseTooLarge`), the rest of the window, from that piece on, is
    cut into pieces of the next smaller split (:func:`finer_split`), and
    *on_finer* hears of it; a single day still too large fails with reason
    ``too_large``. Returns what each piece gave, and the split that worked.
    """
    pieces = window.day_pieces(days)
    parts: list[T] = []
    while len(parts) < len(pieces):
        piece = pieces[len(parts)]
        try:
            parts.append(fetch_piece(piece))
        except ResponseTooLarge:
            days = finer_split(days, piece)
            if days is None:
                raise UpstreamError(FailureReason.TOO_LARGE,
                                    "the response is too large for the API gateway even for "
                                    f"one day ({describe_window(piece)})") from None
            log.info("splitting the period", extra={"fields": {
                "account": account, "too_large": describe_window(piece),
                "days_per_piece": days}})
            if on_finer is not None:
                on_finer(days)
            pieces[len(parts):] = PeriodWindow(piece.start, window.end).day_pieces(days)
    return parts, days


class PieceFetcher:
    """One account's fetches of its period: the split that works, closed pieces' sums.

    Not thread-safe: an account has one refresh at a time.
    """

    def __init__(self, fetch_window: WindowFetch) -> None:
        self._fetch_window = fetch_window
        self.days: int | None = None  # days per piece; None: the whole window in one call
        self._period_start: datetime | None = None
        self._closed: dict[PeriodWindow, UsageSnapshot] = {}
        self._checked_at: datetime | None = None  # window end of the last coarser try
        self._refetched_at: datetime | None = None  # window end of the last full fetch

    @staticmethod
    def _due(last: datetime | None, window: PeriodWindow, every: float) -> bool:
        return last is None or window.end - last >= timedelta(seconds=every)

    def _plan(self, window: PeriodWindow) -> tuple[bool, int | None, list[PeriodWindow]]:
        """Whether every piece is fetched, the days per piece, and the pieces."""
        if window.start != self._period_start:
            self._period_start = window.start
            self._closed = {}
        full = self._due(self._refetched_at, window, REFETCH_SECONDS)
        days = self.days
        if days is not None and days < window.days and \
                self._due(self._checked_at, window, RECHECK_SECONDS):
            days *= 2  # try fewer pieces
            full = True
        return full, days, window.day_pieces(days)

    def planned_calls(self, window: PeriodWindow) -> int:
        """The most calls a fetch of *window* makes now, if the split learnt still holds.

        A recheck tries fewer pieces: if one is too large, the rest is fetched
        with the current split, so it costs at most one call more than that.
        """
        full, days, pieces = self._plan(window)
        if days != self.days:
            return 1 + len(window.day_pieces(self.days))
        return sum(1 for piece in pieces if full or piece not in self._closed)

    def steady_calls(self, window: PeriodWindow) -> tuple[int, int]:
        """Calls of a refresh between full fetches, and the most of a full fetch (once
        an hour, and then the one that tries fewer pieces), for *window*."""
        pieces = window.day_pieces(self.days)
        steady = 1 + sum(1 for p in pieces[:-1] if p not in self._closed)
        coarser = self.days is not None and self.days < window.days
        return steady, len(pieces) + (1 if coarser else 0)

    def fetch(self, account: AccountConfig, window: PeriodWindow,
              permit: RequestPermit | None = None) -> FetchResult:
        """Sum *window* for *account*, piece by piece, refining the split on a 413.

        Closed pieces fetched before a failure are kept for later refreshes,
        and so is a finer split learnt from a 413; a coarser split on trial is
        kept only when the whole fetch worked.
        """
        full, days, _ = self._plan(window)
        if full:
            self._refetched_at = window.end
        if days != self.days:
            self._checked_at = window.end
        requests = body_bytes = 0

        def fetch_piece(piece: PeriodWindow) -> UsageSnapshot:
            nonlocal requests, body_bytes
            cached = None if full else self._closed.get(piece)
            if cached is not None:
                return cached
            requests += 1
            result = self._fetch_window(account, piece, permit)
            body_bytes += result.body_bytes
            if (window.end - piece.end).total_seconds() >= SETTLE_SECONDS:
                self._closed[piece] = result.snapshot
            return result.snapshot

        def learn(finer: int) -> None:
            self.days = finer
            self._checked_at = window.end  # just learnt: no coarser try for a day

        try:
            parts, days = fetch_day_pieces(fetch_piece, window, days, account=account.name,
                                           on_finer=learn)
            self.days = days  # a coarser split on trial is learnt once it has worked
        finally:
            grid = set(window.day_pieces(self.days))
            self._closed = {p: s for p, s in self._closed.items() if p in grid}
        total = parts[0]
        try:
            for part in parts[1:]:
                total = merge(total, part)
        except InvalidResponse as exc:
            raise UpstreamError(FailureReason.INVALID_RESPONSE,
                                f"invalid response: {exc}") from None
        return FetchResult(total, requests, body_bytes)


def fetch_in_pieces(fetch_window: WindowFetch, account: AccountConfig, window: PeriodWindow,
                    permit: RequestPermit | None = None) -> FetchResult:
    """Sum *window* once, split as finely as upstream needs (no memory kept)."""
    return PieceFetcher(fetch_window).fetch(account, window, permit)
