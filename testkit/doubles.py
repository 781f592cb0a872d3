"""Stand-ins for the exporter's collaborators in unit tests: an account, a moment, jitter
that is predictable, an upstream that records what it was asked."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timezone

import httpx
from pydantic import SecretStr

from exporter.core.account import AccountConfig

# An account with every option the client sends upstream.
ACCOUNT = AccountConfig(name="acme", api_key="key-123", api_secret=SecretStr("s3cr3t"),
                        project_ids=("proj_a", "proj_b"))
T0 = datetime(2026, 11, 20, 12, tzinfo=timezone.utc).timestamp()


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
