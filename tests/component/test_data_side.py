"""The whole data side (build_exporter: the refreshers, the pieces, the hourly cap, the
exposition) with large and many accounts: a 10-day gateway with a 10 s TTL, an
``api_url`` per account, a TTL the cap cannot meet, many accounts' own series and
their first refreshes.

The upstream is the demo account behind a gateway (testkit.doubles) over httpx's
MockTransport, or the loopback fake. The pieces alone are tested in
``tests/unit/test_pieces.py``.
"""

from __future__ import annotations

import gzip
import json
import logging
import tempfile
import threading
from pathlib import Path

import httpx
import pytest

from exporter.config.load import build_settings
from exporter.core.errors import FailureReason
from exporter.live.app import landing_page
from exporter.live.service import MAX_CONCURRENT_REFRESHES, build_exporter
from exporter.upstream.demo import DemoAccount
from exporter.upstream.politeness import HOUR
from testkit.clock import FakeClock
from testkit.doubles import DAY, T0, gateway, rounding_demo
from testkit.fake_upstream import FakeUpstream
from testkit.waiting import wait_for
from testkit.web import basic_authorization


@pytest.mark.slow  # ten refreshes of a split window: seconds
def test_ten_day_gateway_and_a_10s_ttl_stay_up_with_few_calls_per_refresh() -> None:
    """The issue's case, against the loopback fake: one simulated day of scrapes every
    10 s with --cache.ttl=10s and the default cap of 60 calls an hour."""
    clock = FakeClock(T0)
    with FakeUpstream(DemoAccount(models=8, users=3, api_key_rounding_per_day=True),
                      "key-123", "s3cr3t") as fake:
        fake.state.too_large_above = 10 * DAY
        # The calendar month, longer than the gateway's ten days: split in pieces.
        settings = build_settings({"scenario.api-url": fake.url, "cache.ttl": "10s",
                                   "period": "month"},
                                  {"SCENARIO_API_KEY": "key-123",
                                   "SCENARIO_API_SECRET": "s3cr3t"})
        exporter = build_exporter(settings, clock=clock.monotonic, wall=clock.wall,
                                  spawn=lambda work: work())
        ages: list[float] = []
        calls_at: list[float] = []  # every call: usages' and the team endpoints'
        per_refresh = []  # usages' calls
        try:
            for _ in range(int(DAY / 10)):
                before, usages_before = fake.request_count, fake.calls("usages")
                exporter.prepare_scrape(0)
                made = fake.calls("usages") - usages_before
                if made:
                    per_refresh.append(made)
                calls_at.extend([clock.seconds] * (fake.request_count - before))
                (view,) = exporter.views()
                assert view.up and view.snapshot is not None
                ages.append(clock.wall() - view.snapshot.window.end.timestamp())
                clock.advance(10)
        finally:
            exporter.close()
    # Refreshes are paced so that the hour's cap lasts and leaves the team's calls room
    # (every 15 minutes: limits, team and 3 pages of projects, 20 an hour): every 100 s
    # (3600 / (60 - 20 - 2 for the hourly recheck) = 94.7 s, on a 10 s scrape). Only as
    # the first hour ends do they wait longer, for the calls of its start (learning the
    # split, finding the team) to leave the sliding hour.
    assert max(ages[360:]) <= 100
    assert max(ages) <= 250 and sum(1 for age in ages if age > 100) <= 15
    assert per_refresh[0] == 5  # learning the split
    # then 1 call (the open piece), and 3 once an hour (every piece)
    later = per_refresh[1:]
    assert max(later) == 3 and 22 <= later.count(3) <= 24
    assert later.count(1) == len(later) - later.count(3)
    assert all(sum(1 for t in calls_at if s <= t < s + HOUR) <= 60 for s in calls_at)
    assert exporter.registry.get_sample_value(
        "scenario_exporter_refresh_failures_total",
        {"account": "default", "reason": "request_cap"}) == 0.0


def test_api_url_per_account_with_two_fakes(tmp_path: Path) -> None:
    with FakeUpstream(DemoAccount(models=3, users=2), "key-a", "secret-a") as first, \
            FakeUpstream(DemoAccount(models=5, users=2, seed=7), "key-b", "secret-b") as second:
        config = tmp_path / "config.yml"
        config.write_text(f"""
accounts:
  - name: main
    api_key: key-a
    api_secret: secret-a
  - name: regional
    api_key: key-b
    api_secret: secret-b
    api_url: {second.url}/
""")
        settings = build_settings({"scenario.api-url": first.url}, {}, config)
        assert settings.accounts[1].api_url == second.url
        exporter = build_exporter(settings)
        try:
            exporter.prepare_scrape(10)
            views = {v.account.name: v for v in exporter.views()}
        finally:
            exporter.close()
    assert views["main"].up and views["regional"].up
    assert views["main"].snapshot is not None and views["regional"].snapshot is not None
    assert len(views["main"].snapshot.models) == 3
    assert len(views["regional"].snapshot.models) == 5
    # One usages call each; each account's team calls go to its own API URL too.
    for fake in (first, second):
        assert sum(r.path.endswith("/usages") for r in fake.state.requests) == 1
    assert {r.authorization for r in second.state.requests} == {
        basic_authorization("key-b", "secret-b")}


def test_a_ttl_the_cap_cannot_meet_is_said_at_start_up_and_on_the_landing_page(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0)
    settings = build_settings({"cache.ttl": "10s"}, {"SCENARIO_API_KEY": "key-123",
                                                     "SCENARIO_API_SECRET": "s3cr3t"})
    exporter = build_exporter(settings, transport=gateway(rounding_demo(), None),
                              clock=clock.monotonic, wall=clock.wall, spawn=lambda work: None)
    page = landing_page(exporter, clock.wall()).decode()
    assert "--cache.ttl=10s cannot be met with --upstream.max-requests-per-hour=60: " \
           "refreshes every account every 1m" in page
    with caplog.at_level(logging.WARNING):
        exporter.start()
    (line,) = [r for r in caplog.records if "cannot be met" in r.getMessage()]
    assert line.__dict__["fields"]["refresh_interval"] == "1m"

    exporter = build_exporter(settings, transport=gateway(rounding_demo(), None),
                              clock=clock.monotonic, wall=clock.wall, spawn=lambda work: work())
    exporter.start()
    # Once refreshing, the pace leaves room for the team's calls: every 15 minutes the
    # limits, the team and 3 pages of projects, 20 calls an hour: 3600 / (60 - 20) = 90 s.
    assert "refreshes default every 90s" in landing_page(exporter, clock.wall()).decode()
    fine = build_exporter(build_settings({}, {"SCENARIO_API_KEY": "k", "SCENARIO_API_SECRET": "s"}),
                          transport=gateway(rounding_demo(), None), spawn=lambda work: None)
    assert fine.cap_notice() is None
    assert "cannot be met" not in landing_page(fine, clock.wall()).decode()


def test_the_exporter_series_are_encoded_again_only_after_a_change() -> None:
    """Many accounts make many exporter series: a warm scrape reuses their text."""
    settings = build_settings({}, {"SCENARIO_API_KEY": "key-123", "SCENARIO_API_SECRET": "s3cr3t"})
    exporter = build_exporter(settings, transport=gateway(rounding_demo(), None),
                              spawn=lambda work: work())
    exporter.start()
    name = 'scenario_exporter_upstream_requests_total{account="default",code="200"}'

    def requests_200(packed: bool = False) -> str:
        body = exporter.exposition.respond(None, "gzip" if packed else None)[1]
        text = (gzip.decompress(body) if packed else body).decode()
        return next(line for line in text.splitlines() if line.startswith(name))

    # Usages' call and the team's (teams, limits, team, 3 pages of projects): 7.
    assert requests_200() == f"{name} 7.0" == requests_200() == requests_200(packed=True)
    exporter.telemetry.record_request("default", "200", 0.1, 10)
    assert requests_200(packed=True) == f"{name} 8.0" == requests_200()
    exporter.telemetry.count_failure("default", FailureReason.TIMEOUT)
    text = exporter.exposition.respond(None, None)[1].decode()
    assert 'scenario_exporter_refresh_failures_total{account="default",reason="timeout"} 1.0' \
        in text


def test_at_most_a_few_accounts_refresh_at_once() -> None:
    """Many accounts start together: their first calls reach upstream a few at a time."""
    gate, lock = threading.Event(), threading.Lock()
    running, most = [0], [0]
    inner = gateway(rounding_demo(), None)

    def handle(request: httpx.Request) -> httpx.Response:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            assert gate.wait(10)
            return inner.handle_request(request)
        finally:
            with lock:
                running[0] -= 1

    config = {"accounts": [{"name": f"a{i}", "api_key": "key-123", "api_secret": "s3cr3t"}
                           for i in range(12)]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yml"
        path.write_text(json.dumps(config))
        settings = build_settings({}, {}, path)
    exporter = build_exporter(settings, transport=httpx.MockTransport(handle))
    try:
        exporter.start()
        wait_for(lambda: running[0] == MAX_CONCURRENT_REFRESHES, 10, "the first refreshes")
        gate.set()
        wait_for(exporter.ready, 10, "every account's first refresh")
    finally:
        exporter.close()
    assert most[0] == MAX_CONCURRENT_REFRESHES < 12
    assert all(view.up for view in exporter.views())
