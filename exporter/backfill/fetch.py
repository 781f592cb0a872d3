"""Past periods from upstream, as politely as the live exporter asks.

One request per account and period; when the gateway says the answer is too
large, the period is cut on UTC midnights by the live exporter's own loop
(:func:`exporter.upstream.pieces.fetch_day_pieces`), down to a single day.
Failures that may pass (429, 5xx, timeouts) are retried with the live
exporter's back-off and ``Retry-After``; the same hourly cap applies, and a
batch job waits for room under it instead of failing.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from exporter.backfill.replay import PeriodUsage, join_pieces, split_into_buckets
from exporter.core.account import AccountConfig
from exporter.core.errors import UpstreamError
from exporter.core.period import PeriodWindow
from exporter.upstream.client import RequestPermit, UsageClient
from exporter.upstream.pieces import fetch_day_pieces
from exporter.upstream.politeness import RequestCap, backoff_delay

log = logging.getLogger("exporter.backfill")

MAX_ATTEMPTS = 5  # per period, for failures that may pass (429, 5xx, timeouts)
CAP_POLL_SECONDS = 30.0


class PeriodFetcher:
    """One period of one account from upstream, as politely as the exporter asks."""

    def __init__(self, client: UsageClient, max_requests_per_hour: int, *,
                 sleep: Callable[[float], None], clock: Callable[[], float],
                 rng: random.Random) -> None:
        self._client = client
        self._limit = max_requests_per_hour
        self._caps: dict[str, RequestCap] = {}
        self._sleep = sleep
        self._clock = clock
        self._rng = rng

    def fetch(self, account: AccountConfig, window: PeriodWindow) -> PeriodUsage:
        """The period's buckets; retries what may pass, raises :class:`UpstreamError`."""
        failures = 0
        while True:
            try:
                return join_pieces(window, self._pieces(account, window))
            except UpstreamError as exc:
                failures += 1
                if not exc.reason.may_pass or failures >= MAX_ATTEMPTS:
                    raise
                delay = backoff_delay(failures, self._rng, exc.retry_after)
                log.warning("retrying", extra={"fields": {
                    "account": account.name, "period": describe(window),
                    "reason": exc.reason.value, "error": str(exc), "attempt": failures,
                    "retry_in_seconds": round(delay, 1)}})
                self._sleep(delay)

    def _pieces(self, account: AccountConfig, window: PeriodWindow) -> list[PeriodUsage]:
        permit = self._permit(account)

        def fetch_piece(piece: PeriodWindow) -> PeriodUsage:
            response, _ = self._client.fetch_response(account, piece, permit)
            return split_into_buckets(response, piece)

        pieces, _ = fetch_day_pieces(fetch_piece, window, None, account=account.name)
        return pieces

    def _permit(self, account: AccountConfig) -> RequestPermit:
        """The hourly cap: a batch job waits for room where the exporter would skip."""
        cap = self._caps.setdefault(account.name, RequestCap(self._limit, self._clock))

        def permit() -> bool:
            while not cap.try_acquire():
                log.info("hourly request cap reached, waiting", extra={"fields": {
                    "account": account.name, "cap": self._limit}})
                self._sleep(CAP_POLL_SECONDS)
            return True

        return permit


def describe(window: PeriodWindow) -> str:
    """``2026-08-01/2026-09-01``: a window in log lines."""
    return f"{window.start:%Y-%m-%d}/{window.end:%Y-%m-%d}"
