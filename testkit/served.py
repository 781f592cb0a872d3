"""The real exporter against the loopback fake, read as the process tests read it.

One account (``default``) with the fake's credentials, a port chosen by the
exporter, refreshes allowed once a second; then what a scrape says of it: the
period it serves, its business samples, its failure and request counters, its
row on the landing page. Free of pytest (``tests/process/conftest.py`` holds the
``fake`` fixture that pairs with :func:`start`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from exporter.metrics.team import team_families
from testkit.exposition import Exposition, moment
from testkit.fake_upstream import FakeUpstream
from testkit.processes import ExporterProcess, Processes
from testkit.waiting import wait_for

API_KEY = "itest-key"
API_SECRET = "itest-secret-value"
ACCOUNT = "default"
REASONS = ("auth", "rate_limited", "server_error", "timeout", "invalid_response")
MODEL_COUNTERS = {
    "scenario_model_cost_creative_units_total": "cost",
    "scenario_model_cost_by_api_key_creative_units_total": "cost_api_key",
    "scenario_model_discount_creative_units_total": "discount",
    "scenario_model_discount_by_api_key_creative_units_total": "discount_api_key",
    "scenario_model_jobs_total": "jobs",
}
# The team's series (plan, prepaid units, caps): read on their own interval, not usages'.
TEAM_SERIES = frozenset(name for family in team_families([], 0.0, 0.0)
                        for name in (family.name, family.name + "_info"))
TEAM_ENDPOINTS = ("teams", "team", "team_limits", "projects")


def start(processes: Processes, fake: FakeUpstream, *args: str,
          env: Mapping[str, str] | None = None) -> ExporterProcess:
    """The exporter on a free loopback port, reading *fake* with the right credentials."""
    # The hourly cap paces refreshes (one a minute at the default 60): allow one a second.
    return processes.start(
        "--web.listen-address", "127.0.0.1:0", "--scenario.api-url", fake.url,
        "--upstream.max-requests-per-hour", "3600", *args,
        env={"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": API_SECRET, **(env or {})})


def scrape_until(proc: ExporterProcess, condition: Callable[[Exposition], Any], message: str,
                 timeout: float = 15.0) -> Exposition:
    """Scrape every 50 ms until *condition(exposition)* holds."""
    def attempt() -> Exposition | None:
        expo = proc.metrics()
        return expo if condition(expo) else None
    return wait_for(attempt, timeout, message, interval=0.05)  # type: ignore[return-value]


def served_window(expo: Exposition) -> tuple[datetime, datetime]:
    """``[period start, data as of]`` of the default account, from the exposition."""
    start = expo.value("scenario_period_start_timestamp_seconds", account=ACCOUNT)
    as_of = expo.value("scenario_data_as_of_timestamp_seconds", account=ACCOUNT)
    assert start is not None and as_of is not None, "no data served"
    return moment(start), moment(as_of)


def business(expo: Exposition) -> dict[Any, float]:
    """The per-account business samples of usages (what must survive an upstream failure)."""
    return {key: value for key, value in expo.samples.items()
            if key[0].startswith("scenario_") and not key[0].startswith("scenario_exporter_")
            and key[0] != "scenario_up" and key[0] not in TEAM_SERIES}


def withdrawable(expo: Exposition) -> dict[Any, float]:
    """The counters and _info series: what is withdrawn when data passes --cache.max-stale."""
    return {key: value for key, value in business(expo).items()
            if key[0].endswith(("_total", "_info"))}


def is_up(expo: Exposition) -> bool:
    """Usages refreshed, and the first refresh of the team endpoints over (it publishes
    them all at its end): from then on, no call is made but usages' until the team
    interval (15 minutes) has passed."""
    return expo.value("scenario_up", account=ACCOUNT) == 1.0 and \
        expo.value("scenario_exporter_endpoint_up", account=ACCOUNT, endpoint="team") is not None


def team_calls(fake: FakeUpstream) -> int:
    """The calls *fake* has had of the team endpoints (each answered 200 unless a team
    mode is on)."""
    return sum(fake.calls(endpoint) for endpoint in TEAM_ENDPOINTS)


def failures(expo: Exposition, reason: str) -> float | None:
    return expo.value("scenario_exporter_refresh_failures_total", account=ACCOUNT,
                      reason=reason)


def requests_with(expo: Exposition, code: str) -> float:
    return expo.value("scenario_exporter_upstream_requests_total", account=ACCOUNT,
                      code=code) or 0.0


def landing_row(page: str, account: str = ACCOUNT) -> list[str]:
    """The cells of *account*'s row: account, upstream, last refresh, data age, last error."""
    match = re.search(rf"<tr><td>{re.escape(account)}</td>(?:<td>.*?</td>)+</tr>", page)
    assert match, f"no row for account {account} on the landing page"
    return re.findall(r"<td>(.*?)</td>", match.group(0))
