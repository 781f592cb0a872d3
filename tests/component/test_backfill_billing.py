"""The backfill with --period=billing and auto: periods step back from the team's
current billing period (read from Scenario) by calendar months, same day and time; a key
that cannot read it falls back to the calendar month, and the run says which."""

from __future__ import annotations

import io
import json
import logging
from datetime import date
from pathlib import Path

import httpx
import pytest

from exporter.backfill.command import BackfillOptions
from exporter.backfill.run import run_backfill
from exporter.cli.exit import run_program
from exporter.config.settings import Settings
from exporter.core.period import isoformat_utc
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import demo_transport
from testkit.backfill import KEY, NOW, SECRET, two_accounts, utc
from testkit.clock import FakeClock


def run(settings: Settings, tmp_path: Path, *, refuse_team: bool = False,
        start: date = date(2026, 8, 1), end: date = date(2026, 10, 1)) -> tuple[int, list[str]]:
    demo = demo_transport(DemoAccount(models=3, users=2), KEY, SECRET, now=lambda: NOW)
    starts: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/usages"):
            starts.append(request.url.params["startDate"])
        elif refuse_team:
            return httpx.Response(403, json={"message": "Forbidden"})
        return demo.handle_request(request)

    clock = FakeClock(NOW.timestamp())
    options = BackfillOptions(start, end, str(tmp_path / "out.om"))
    code = run_program(lambda: run_backfill(
        settings, options, httpx.MockTransport(handle), wall=clock.wall, clock=clock.monotonic,
        sleep=clock.sleep, stderr=io.StringIO()), io.StringIO())
    return code, starts


@pytest.mark.parametrize("period", ["billing", "auto"])
def test_periods_step_back_from_the_billing_period(tmp_path: Path, period: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    settings = two_accounts(tmp_path, period=period)
    with caplog.at_level(logging.INFO, "exporter"):
        code, starts = run(settings, tmp_path, start=date(2026, 9, 1), end=date(2026, 11, 1))
    assert code == 0
    # The demo team's period began 2026-11-17 09:00: the whole ones that cover September
    # and October, each a calendar month long, start on the 17th at 09:00.
    expected = [utc(2026, month, 17, 9) for month in (8, 9, 10)]
    assert sorted(set(starts)) == [isoformat_utc(moment) for moment in expected]
    text = (tmp_path / "out.om").read_text(encoding="utf-8")
    # Each period's _created (read off the lines: the parser keeps one per series).
    created = {float(line.split()[1]) for line in text.splitlines()
               if line.split("{", 1)[0].endswith("_created")}
    assert created == {moment.timestamp() for moment in expected}
    said = [json.dumps(getattr(r, "fields", {})) for r in caplog.records
            if r.getMessage() == "backfill periods"]
    assert len(said) == 2 and all("billing period from Scenario" in line for line in said)


def test_without_readable_limits_auto_steps_by_calendar_months(tmp_path: Path) -> None:
    code, starts = run(two_accounts(tmp_path, period="auto"), tmp_path, refuse_team=True)
    assert code == 0
    assert sorted(set(starts)) == [isoformat_utc(utc(2026, month, 1)) for month in (8, 9)]


def test_the_end_is_held_against_the_billing_period_not_the_calendar(tmp_path: Path) -> None:
    # The calendar month began 2026-11-01, the billing period only on the 17th at 09:00:
    # --end=2026-11-15 is in the past of the billing period (the calendar would refuse it),
    # --end=2026-11-18 reaches into it.
    code, starts = run(two_accounts(tmp_path, period="billing"), tmp_path,
                       start=date(2026, 9, 1), end=date(2026, 11, 15))
    assert code == 0
    assert max(starts) == isoformat_utc(utc(2026, 10, 17, 9))
    code, starts = run(two_accounts(tmp_path, period="billing"), tmp_path,
                       start=date(2026, 9, 1), end=date(2026, 11, 18))
    assert code == 2 and starts == []
