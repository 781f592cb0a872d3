"""What splitting costs over a month: ``python -m bench.split [--quick]``.

Replays a whole month of refreshes of one account (a simulated clock, a
refresh every TTL) behind a gateway that answers 413 above a window length,
through the real :class:`AccountRefresher` and client over httpx's
``MockTransport``. For each gateway limit it reports the upstream calls per
refresh, the busiest hour against the cap, and what refetching every closed
piece at every refresh would cost instead (the pieces of each window), which
is what the exporter avoids by keeping the sums of closed, settled pieces.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime, timezone

import httpx
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from bench.run import _table
from exporter.core.account import AccountConfig
from exporter.core.period import current_window, parse_iso
from exporter.live.scheduler import AccountRefresher, RefreshPolicy
from exporter.metrics.own import Telemetry
from exporter.upstream.client import UsageClient
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import demo_transport
from exporter.upstream.politeness import HOUR

DAY = 86400.0
MONTH_START = datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()
ACCOUNT = AccountConfig(name="large", api_key="k", api_secret=SecretStr("s"))


def gateway(limit_days: float, calls: list[float], clock: list[float]) -> httpx.MockTransport:
    inner = demo_transport(DemoAccount(models=12, users=4), "k", "s")

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(clock[0])
        params = request.url.params
        days = (parse_iso(params["endDate"]) - parse_iso(params["startDate"])).total_seconds()
        if days > limit_days * DAY:
            return httpx.Response(413, json={"message": "Response payload size exceeded"})
        return inner.handle_request(request)
    return httpx.MockTransport(handle)


def replay(limit_days: float, ttl: float, cap: int, days: int) -> dict[str, float]:
    """A refresh attempt every TTL for *days* days; what upstream saw."""
    clock = [0.0]
    calls: list[float] = []
    client = UsageClient("https://upstream.invalid/v1", 5,
                         transport=gateway(limit_days, calls, clock))
    registry = CollectorRegistry()
    refresher = AccountRefresher(
        ACCOUNT, client.fetch_window, Telemetry(registry, ["large"]),
        RefreshPolicy(ttl=ttl, max_requests_per_hour=cap), clock=lambda: clock[0],
        wall=lambda: MONTH_START + clock[0], spawn=lambda work: work())
    per_refresh: list[int] = []
    pieces: list[int] = []
    down = 0
    while clock[0] < days * DAY:
        before = len(calls)
        if refresher.maybe_refresh():
            per_refresh.append(len(calls) - before)
            now = datetime.fromtimestamp(MONTH_START + clock[0], timezone.utc)
            pieces.append(len(current_window(now).day_pieces(refresher.days_per_piece)))
        down += not refresher.view.up
        clock[0] += ttl
    client.close()
    later = per_refresh[1:]
    busiest, first = 0, 0  # calls are in time order: a sliding hour over them
    for last, moment in enumerate(calls):
        while calls[first] <= moment - HOUR:
            first += 1
        busiest = max(busiest, last - first + 1)
    failures = sum(value for metric in registry.collect() for sample in metric.samples
                   if sample.name == "scenario_exporter_refresh_failures_total"
                   for value in [sample.value])
    return {"refreshes": len(per_refresh), "first": per_refresh[0],
            "mean": sum(later) / len(later), "max": max(later),
            "uncached_mean": sum(pieces[1:]) / len(pieces[1:]), "uncached_max": max(pieces),
            "busiest_hour": busiest, "calls": len(calls), "failures": failures,
            "down": down}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.split", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a week instead of a month")
    args = parser.parse_args(argv)
    days = 7 if args.quick else 31
    ttl, cap = 300.0, 60
    rows = []
    for limit in (3, 10):
        r = replay(limit, ttl, cap, days)
        rows.append((f"{limit} days", f"{r['refreshes']:.0f}", f"{r['first']:.0f}",
                     f"{r['mean']:.2f} / {r['max']:.0f}",
                     f"{r['uncached_mean']:.2f} / {r['uncached_max']:.0f}",
                     f"{r['busiest_hour']:.0f} / {cap}", f"{r['failures']:.0f}",
                     f"{r['down']:.0f}"))
    print(f"One account, December 2026 day by day for {days} days, --cache.ttl=5m, "
          f"--upstream.max-requests-per-hour={cap}:\n")
    print(_table(("gateway limit", "refreshes", "calls, first refresh",
                  "calls per later refresh: mean / max",
                  "if closed pieces were refetched: mean / max", "busiest hour / cap",
                  "failed refreshes", "scrapes with scenario_up 0"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
