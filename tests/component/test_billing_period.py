"""--period=billing and auto end to end: the data side reading the loopback fake, whose
billing period runs from the 17th 09:00 UTC. The usages window, the period gauges and
``_created`` follow it; a failing limits call never moves it; a key that cannot read
the limits falls back to the calendar month."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from exporter.core.period import isoformat_utc
from exporter.live.exporter import UsageExporter
from exporter.live.landing import landing_page
from exporter.upstream.demo import DemoAccount
from testkit.clock import FakeClock
from testkit.data_side import over_fake, scrape
from testkit.fake_upstream import FakeUpstream

UTC = timezone.utc
NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
BILLING_START = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
BILLING_END = datetime(2026, 12, 17, 9, 0, tzinfo=UTC)
KEY, SECRET = "period-key", "period-secret"


@contextmanager
def running(period: str, mode: str = "ok") -> Iterator[tuple[FakeUpstream, UsageExporter,
                                                              FakeClock]]:
    with over_fake(DemoAccount(models=3, users=2), KEY, SECRET, NOW.timestamp(), mode,
                   {"period": period}) as running:
        yield running


def usage_starts(fake: FakeUpstream) -> list[str]:
    return [r.params["startDate"] for r in fake.state.requests if r.path.endswith("/usages")]


def test_auto_follows_the_billing_period_from_the_first_request() -> None:
    with running("auto") as (fake, exporter, _):
        exporter.start()
        text = scrape(exporter)
        om = scrape(exporter, openmetrics=True)
        # No usages call went out on a guessed period: the first waited for the limits.
        assert usage_starts(fake) == [isoformat_utc(BILLING_START)]
        page = landing_page(exporter, NOW.timestamp()).decode()
    assert "billing period from Scenario, 2026-11-17 09:00 to 2026-12-17 09:00 UTC" in page
    account = {"account": "default"}
    assert text.value("scenario_period_start_timestamp_seconds", **account) == \
        BILLING_START.timestamp()
    assert text.value("scenario_period_end_timestamp_seconds", **account) == \
        BILLING_END.timestamp()
    created = {v for (name, _), v in om.samples.items() if name.endswith("_created")}
    assert created == {BILLING_START.timestamp()}


def test_a_failing_limits_call_never_moves_the_period_and_it_renews_monthly() -> None:
    with running("billing") as (fake, exporter, clock):
        assert scrape(exporter).value("scenario_period_start_timestamp_seconds",
                                      account="default") == BILLING_START.timestamp()
        fake.set_mode("team-garbage")
        clock.advance(3600)
        during = scrape(exporter)
        assert during.value("scenario_exporter_endpoint_up", account="default",
                            endpoint="team_limits") == 0.0
        assert during.value("scenario_period_start_timestamp_seconds",
                            account="default") == BILLING_START.timestamp()
        # Past the end with nothing heard: the next period, same day and time.
        clock.seconds = BILLING_END.timestamp() - NOW.timestamp() + 60
        after = scrape(exporter)
        assert usage_starts(fake)[-1] == isoformat_utc(BILLING_END)
    assert after.value("scenario_period_start_timestamp_seconds", account="default") == \
        BILLING_END.timestamp()
    assert after.value("scenario_period_end_timestamp_seconds", account="default") == \
        datetime(2027, 1, 17, 9, tzinfo=UTC).timestamp()


def test_auto_falls_back_to_the_calendar_month_when_the_key_cannot_read_the_limits() -> None:
    with running("auto", mode="team-403") as (fake, exporter, _):
        got = scrape(exporter)
        assert usage_starts(fake) == [isoformat_utc(datetime(2026, 11, 1, tzinfo=UTC))]
        page = landing_page(exporter, NOW.timestamp()).decode()
    assert "calendar month from day 1, 2026-11-01 00:00 to 2026-12-01 00:00 UTC (--period=auto:" \
        " the key cannot read the team&#x27;s limits)" in page
    assert got.value("scenario_up", account="default") == 1.0
    assert got.value("scenario_period_start_timestamp_seconds", account="default") == \
        datetime(2026, 11, 1, tzinfo=UTC).timestamp()


def test_month_reads_no_period_from_upstream() -> None:
    with running("month") as (fake, exporter, _):
        got = scrape(exporter)
        assert usage_starts(fake) == [isoformat_utc(datetime(2026, 11, 1, tzinfo=UTC))]
    assert got.value("scenario_period_end_timestamp_seconds", account="default") == \
        datetime(2026, 12, 1, tzinfo=UTC).timestamp()
