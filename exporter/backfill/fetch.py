"""Past periods from upstream, as politely as the live exporter asks.

One request per account and period; when the gateway says the answer is too
large, the period is cut on UTC midnights as the live exporter cuts it
(:func:`exporter.upstream.pieces.finer_split`) and each piece asked for, down to a single
day. Failures that may pass (429, 5xx, timeouts) are retried with the
exporter's back-off and ``Retry-After``; the exporter's hourly cap applies, and
a batch job waits for room under it instead of failing.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from exporter.backfill.replay import PeriodUsage, join_pieces, split_into_buckets
from exporter.core.account import AccountConfig
from exporter.core.period import PeriodWindow
from exporter.core.values import ResponseTooLarge, UpstreamError
from exporter.live.scheduler import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, RequestCap
from exporter.upstream.client import RequestPermit, UsageClient
from exporter.upstream.pieces import finer_split

log = logging.getLogger("exporter.backfill")

MAX_ATTEMPTS = 5  # per period, for failures that may pass (429, 5xx, timeouts)
RETRIABLE = frozenset({"rate_limited", "server_error", "timeout", "connection_error"})
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
                if exc.reason not in RETRIABLE or failures >= MAX_ATTEMPTS:
                    raise
                # The exporter's back-off: doubling, jittered, at least Retry-After.
                delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (failures - 1))
                delay *= self._rng.uniform(0.5, 1.0)
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                log.warning("retrying", extra={"fields": {
                    "account": account.name, "period": describe(window),
                    "reason": exc.reason, "error": str(exc), "attempt": failures,
                    "retry_in_seconds": round(delay, 1)}})
                self._sleep(delay)

    def _pieces(self, account: AccountConfig, window: PeriodWindow) -> list[PeriodUsage]:
        try:
            response, _ = self._client.fetch_response(account, window, self._permit(account))
        except ResponseTooLarge:
            # The live exporter's cuts: pieces of whole UTC days, each as large as fits.
            days = finer_split(None, window)
            if days is None:
                raise UpstreamError("too_large", f"upstream says the answer for one day "
                                                 f"({describe(window)}) is too large") from None
            pieces = window.day_pieces(days)
            log.info("splitting period", extra={"fields": {
                "account": account.name, "window": describe(window),
                "pieces": " + ".join(describe(piece) for piece in pieces)}})
            return [usage for piece in pieces for usage in self._pieces(account, piece)]
        return [split_into_buckets(response, window)]

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
