"""The real exporter when upstream fails: the last good data is still served, the
failure is counted by reason, upstream is left alone while backing off, and data
older than ``--cache.max-stale`` is withdrawn.

Each test starts ``python -m exporter`` against the loopback fake and switches
the fake to a fault mode once the first refresh has succeeded (or from the start).
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from testkit.exposition import Exposition
from testkit.fake_upstream import FakeUpstream
from testkit.processes import Processes
from testkit.served import (
    ACCOUNT,
    REASONS,
    business,
    failures,
    is_up,
    landing_row,
    requests_with,
    scrape_until,
    served_window,
    start,
    team_calls,
    withdrawable,
)
from testkit.waiting import wait_for

FAULTS = [
    # mode, expected failure reason, expected upstream `code`, extra flags
    pytest.param("500", "server_error", "500", (), id="5xx"),
    pytest.param("429", "rate_limited", "429", (), id="429-retry-after"),
    pytest.param("401", "auth", "401", (), id="401"),
    pytest.param("403", "auth", "403", (), id="403"),
    pytest.param("garbage", "invalid_response", "invalid_response", (), id="garbage-json"),
    pytest.param("invalid", "invalid_response", "invalid_response", (), id="non-numeric"),
    pytest.param("slow", "timeout", "timeout", ("--upstream.timeout", "1s"), id="slow-timeout"),
]


@pytest.mark.parametrize("mode, reason, code, flags", FAULTS)
def test_upstream_fault_keeps_serving_last_good_data(processes: Processes, fake: FakeUpstream,
                                                     mode: str, reason: str, code: str,
                                                     flags: tuple[str, ...]) -> None:
    fake.state.retry_after = "45"
    fake.state.slow_seconds = 4.0
    proc = start(processes, fake, "--cache.ttl", "1s", *flags)
    good = scrape_until(proc, is_up, "the first refresh to succeed")
    assert requests_with(good, code) == 0

    fake.set_mode(mode)
    failed = scrape_until(proc, lambda e: (failures(e, reason) or 0) >= 1,
                          f"a refresh to fail with reason {reason}")

    assert failed.value("scenario_up", account=ACCOUNT) == 0.0
    assert failures(failed, reason) == 1.0
    assert all(failures(failed, other) == 0.0 for other in REASONS if other != reason)
    assert requests_with(failed, code) == 1
    assert requests_with(failed, "200") == requests_with(good, "200") == 1 + team_calls(fake)
    # The last good data is still served, unchanged, window included.
    assert business(failed) == business(good)
    row = landing_row(proc.get("/").text)
    assert row[1] == "down" and row[4], f"landing page row {row}"
    assert proc.get("/-/ready").status_code == 200  # ready means "attempted", not "up"

    log = proc.wait_for_line(lambda line: "refresh failed" in line and f"reason={reason}" in line)
    if mode == "429":
        # Retry-After (45 s) wins over the first back-off step (at most 10 s).
        retry_in = re.search(r"retry_in_seconds=([\d.]+)", log)
        assert retry_in and float(retry_in.group(1)) >= 45.0, log
    # Back-off: the failure left nothing fresh, so without it the next scrape would call
    # upstream again; scrapes keep coming, upstream hears nothing more.
    calls = fake.calls("usages")
    for _ in range(8):
        assert proc.get("/metrics").status_code == 200
        threading.Event().wait(0.1)  # a scrape interval, not waiting for a condition
    assert fake.calls("usages") == calls


def test_stale_data_is_withdrawn_past_max_stale(processes: Processes,
                                                fake: FakeUpstream) -> None:
    max_stale = 2.0
    proc = start(processes, fake, "--cache.ttl", "1s", "--cache.max-stale", "2s")
    good = scrape_until(proc, is_up, "the first refresh to succeed")
    as_of = served_window(good)[1].timestamp()
    fake.set_mode("500")

    def withdrawn() -> Exposition | None:
        before = time.time()
        expo = proc.metrics()
        after = time.time()
        if withdrawable(expo):
            # Still served: only while the data is younger than the bound.
            assert before - as_of <= max_stale, "stale data served past --cache.max-stale"
            assert business(expo) == business(good)
            return None
        assert after - as_of > max_stale, "data withdrawn before --cache.max-stale"
        return expo

    expo = wait_for(withdrawn, 15, "the business series to be withdrawn", interval=0.05)
    # The account, its timestamps and budget, and the exporter's own series stay (docs/
    # metrics.md, Staleness): the dashboards show a gap, and the staleness alert fires.
    assert expo.value("scenario_up", account=ACCOUNT) == 0.0
    assert served_window(expo) == served_window(good)
    assert failures(expo, "server_error") == 1.0
    assert requests_with(expo, "500") == 1
    assert landing_row(proc.get("/").text)[1] == "down"


def test_auth_failure_from_the_start(processes: Processes, fake: FakeUpstream) -> None:
    proc = start(processes, fake, "--cache.ttl", "1s",
                 env={"SCENARIO_API_SECRET": "not-the-right-secret"})
    expo = scrape_until(proc, lambda e: failures(e, "auth") == 1.0, "the auth failure")
    assert expo.value("scenario_up", account=ACCOUNT) == 0.0
    # Every call is refused: usages' one and the team's (which come first with --period=auto).
    assert requests_with(expo, "401") == 1 + team_calls(fake)
    # Never any data: no business series, no window.
    assert business(expo) == {}
    assert proc.get("/-/ready").status_code == 200

