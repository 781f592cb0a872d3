"""Stand-ins for the exporter's collaborators in unit tests: an account, a moment, jitter
that is predictable, an upstream that records what it was asked, and the demo account
behind a gateway that refuses long windows, as a large account's is."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timezone

import httpx
from pydantic import SecretStr

from exporter.core.account import AccountConfig
from exporter.core.period import PeriodWindow, parse_iso
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import demo_transport

# An account with every option the client sends upstream.
ACCOUNT = AccountConfig(name="acme", api_key="key-123", api_secret=SecretStr("s3cr3t"),
                        project_ids=("proj_a", "proj_b"), team_id="team_7",
                        user_ids=("user_1", "user_2"))
T0 = datetime(2026, 11, 20, 12, tzinfo=timezone.utc).timestamp()
DAY = 86400.0


class MaxRandom(random.Random):
    """Jitter at its upper bound, so back-off delays are predictable."""

    def uniform(self, a: float, b: float) -> float:
        return b


def recording_transport(handler: Callable[[httpx.Request], httpx.Response],
                        seen: list[httpx.Request]) -> httpx.MockTransport:
    """An httpx transport answering with *handler*, each request appended to *seen*."""
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)
    return httpx.MockTransport(handle)


def rounding_demo() -> DemoAccount:
    """A demo account whose API-key fields are rounded once per UTC day, as upstream's
    daily rollups are: a cut inside a day loses a little of them, one on midnight none."""
    return DemoAccount(models=12, users=5, api_key_rounding_per_day=True)


def gateway(account: DemoAccount, limit_days: float | None,
            seen: list[PeriodWindow] | None = None) -> httpx.MockTransport:
    """*account* for ACCOUNT's credentials, behind a gateway that refuses windows longer
    than *limit_days* (413); each window asked is appended to *seen*. The team endpoints
    pass through to the demo API."""
    inner = demo_transport(account, ACCOUNT.key(), ACCOUNT.secret())

    def handle(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/usages"):
            return inner.handle_request(request)
        window = PeriodWindow(parse_iso(request.url.params["startDate"]),
                              parse_iso(request.url.params["endDate"]))
        if seen is not None:
            seen.append(window)
        if limit_days is not None and window.seconds > limit_days * DAY:
            return httpx.Response(413, json={"message": "Response payload size exceeded"})
        return inner.handle_request(request)
    return httpx.MockTransport(handle)
