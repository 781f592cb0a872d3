"""The live exporter's data side over the loopback fake, on one fake clock: what the
component tests of the team endpoints and of the billing period build and scrape."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from exporter.config.load import build_settings
from exporter.live.exporter import UsageExporter
from exporter.live.service import build_exporter
from exporter.upstream.demo import DemoAccount
from testkit.clock import FakeClock
from testkit.exposition import Exposition
from testkit.fake_upstream import FakeUpstream


@contextmanager
def over_fake(account: DemoAccount, key: str, secret: str, now: float, mode: str = "ok",
              flags: Mapping[str, str] | None = None,
              ) -> Iterator[tuple[FakeUpstream, UsageExporter, FakeClock]]:
    """The fake serving *account* in *mode* and the exporter's data side reading it with
    *flags*; both on one fake clock starting at *now*, refreshes run in the caller."""
    clock = FakeClock(now)
    with FakeUpstream(account, key, secret) as fake:
        fake.state.clock = clock.wall
        fake.set_mode(mode)
        settings = build_settings({"scenario.api-url": fake.url, **(flags or {})},
                                  {"SCENARIO_API_KEY": key, "SCENARIO_API_SECRET": secret})
        exporter = build_exporter(settings, clock=clock.monotonic, wall=clock.wall,
                                  spawn=lambda work: work())
        try:
            yield fake, exporter, clock
        finally:
            exporter.close()


def scrape(exporter: UsageExporter, openmetrics: bool = False) -> Exposition:
    """One scrape of the data side, as Prometheus would trigger it."""
    exporter.prepare_scrape(5)
    accept = "application/openmetrics-text; version=1.0.0" if openmetrics else "text/plain"
    _, body = exporter.exposition.respond(accept, None)
    return Exposition.parse(body.decode(), openmetrics)
