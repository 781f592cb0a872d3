"""``scenario-exporter backfill``: past periods written as the live series, politely.

The demo account is the upstream (through the real client, as an httpx
transport): its totals over any window are known exactly, so every sample can
be compared with the truth. Clocks and sleeps are fakes: nothing waits. The
replay of one period is tested alone in ``tests/unit/test_replay.py``, the plan of
periods in ``tests/unit/test_backfill_plan.py``, the command's bad input in
``tests/process/test_cli.py``.
"""

from __future__ import annotations

import io
import logging
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from exporter.config.load import build_settings
from exporter.core.period import PeriodWindow
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import demo_transport
from testkit.backfill import (
    KEY,
    LABELS,
    NOW,
    SECRET,
    Upstream,
    backfill,
    parse,
    two_accounts,
    utc,
)
from testkit.clock import FakeClock
from testkit.oracle import model_totals

# -- the series of each account -------------------------------------------------


def test_each_account_gets_its_own_upstreams_sums(tmp_path: Path) -> None:
    config = tmp_path / "accounts.yml"
    config.write_text(f"""\
accounts:
  - {{name: studio, api_key: {KEY}, api_secret: {SECRET}}}
  - {{name: mobile, api_key: other-key, api_secret: other-secret}}
""", encoding="utf-8")
    studio, mobile = DemoAccount(models=4, users=2), DemoAccount(models=3, users=2, seed=7)
    transports = (demo_transport(studio, KEY, SECRET),
                  demo_transport(mobile, "other-key", "other-secret"))

    def handle(request: httpx.Request) -> httpx.Response:
        for transport in transports:  # each accepts its own credentials only
            answer = transport.handle_request(request)
            if answer.status_code != 401:
                return answer
        return httpx.Response(401, json={})

    upstream = Upstream()
    upstream.handle = handle  # type: ignore[method-assign]
    output = tmp_path / "out.om"
    assert backfill(build_settings({"period": "month"}, {}, config), upstream, output,
                    start=date(2026, 10, 1)) == 0
    series = parse(output.read_text(encoding="utf-8"))
    october = PeriodWindow(utc(2026, 10, 1), utc(2026, 11, 1))
    for name, account in (("studio", studio), ("mobile", mobile)):
        served = {dict(labels)["model_id"]: samples[-1][1]
                  for (sample, labels), samples in series.items()
                  if sample == "scenario_model_cost_creative_units_total"
                  and dict(labels)["account"] == name}
        truth = model_totals(account, october.start, october.end)
        assert served == {model_id: t["cost"] for model_id, t in truth.items()}


# -- the periods of an anchor day -----------------------------------------------


@pytest.mark.slow  # months of output, written and read back: seconds each
def test_anchor_day_backfill_ends_each_period_at_the_fakes_sum(tmp_path: Path) -> None:
    settings = two_accounts(tmp_path, **{"period.anchor-day": "15"})
    upstream = Upstream()
    output = tmp_path / "history.om"
    assert backfill(settings, upstream, output, start=date(2026, 9, 15),
                    end=date(2026, 11, 15)) == 0
    series = parse(output.read_text(encoding="utf-8"))
    for start, end in ((utc(2026, 9, 15), utc(2026, 10, 15)),
                       (utc(2026, 10, 15), utc(2026, 11, 15))):
        for model_id, truth in model_totals(upstream.account, start, end).items():
            samples = dict(series[("scenario_model_cost_creative_units_total", frozenset(
                {"account": "mobile", "model_id": model_id, **LABELS}.items()))])
            assert samples[end.timestamp() - 0.001] == truth["cost"]
    assert upstream.windows == [(utc(2026, 9, 15), utc(2026, 10, 15)),
                                (utc(2026, 10, 15), utc(2026, 11, 15))] * 2


# -- politeness ----------------------------------------------------------------------


def test_one_request_per_period_and_account(tmp_path: Path) -> None:
    upstream = Upstream()
    assert backfill(two_accounts(tmp_path), upstream, tmp_path / "out.om") == 0
    months = [(utc(2026, 8, 1), utc(2026, 9, 1)), (utc(2026, 9, 1), utc(2026, 10, 1)),
              (utc(2026, 10, 1), utc(2026, 11, 1))]
    assert upstream.windows == months * 2


def test_too_large_splits_on_days_and_stays_exact(tmp_path: Path) -> None:
    too_large = httpx.Response(413, json={"message": "Response payload size exceeded"})
    upstream = Upstream(fault=lambda a, b: too_large if b - a > timedelta(days=10) else None)
    output = tmp_path / "out.om"
    assert backfill(two_accounts(tmp_path), upstream, output, start=date(2026, 10, 1)) == 0
    fetched = [w for w in upstream.windows if w[1] - w[0] <= timedelta(days=10)]
    assert all(a.hour == 0 and b.hour == 0 for a, b in fetched)
    # The live exporter's cuts: 16-day pieces from the period start, then 8-day ones.
    cuts = [utc(2026, 10, day) for day in (1, 9, 17, 25)] + [utc(2026, 11, 1)]
    assert fetched == list(zip(cuts[:-1], cuts[1:], strict=True)) * 2
    october = (utc(2026, 10, 1), utc(2026, 11, 1))
    series = parse(output.read_text(encoding="utf-8"))
    for model_id, truth in model_totals(upstream.account, *october).items():
        for field, name in (
                ("cost", "scenario_model_cost_creative_units_total"),
                ("cost_api_key", "scenario_model_cost_by_api_key_creative_units_total")):
            samples = series[(name, frozenset(
                {"account": "studio", "model_id": model_id, **LABELS}.items()))]
            assert samples[-1] == (october[1].timestamp() - 0.001, truth[field])
            assert len(samples) >= 31  # at least daily


def test_a_day_still_too_large_is_reported_missing(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    upstream = Upstream(fault=lambda a, b: httpx.Response(413, json={}))
    output = tmp_path / "out.om"
    with caplog.at_level(logging.INFO, "exporter"):
        assert backfill(two_accounts(tmp_path), upstream, output,
                        start=date(2026, 10, 1)) == 1
    missing = [r.fields["missing"] for r in caplog.records  # type: ignore[attr-defined]
               if r.getMessage() == "period missing"]
    assert missing[0] == ("studio 2026-10-01/2026-11-01 (too_large: the response is too large "
                          "for the API gateway even for one day "
                          "(2026-10-01T00:00:00.000Z/2026-10-02T00:00:00.000Z))")
    assert not output.exists()


def test_sums_that_overflow_are_an_invalid_response_not_a_crash(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    huge = {"modelUsages": [{"modelId": "m", "points": [
        {"time": f"2026-10-0{day}T00:00:00.000Z", "cost": 1.5e308} for day in (1, 2)]}]}
    upstream = Upstream(fault=lambda a, b: httpx.Response(200, json=huge))
    with caplog.at_level(logging.INFO, "exporter"):
        assert backfill(two_accounts(tmp_path), upstream, tmp_path / "out.om",
                        start=date(2026, 10, 1)) == 1
    missing = [r.fields["missing"] for r in caplog.records  # type: ignore[attr-defined]
               if r.getMessage() == "period missing"]
    assert len(missing) == 2 and all("(invalid_response: " in m for m in missing)


def test_retry_after_and_back_off_are_obeyed(tmp_path: Path) -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "120"}),
               httpx.Response(503, json={})]
    upstream = Upstream(fault=lambda a, b: answers.pop(0) if answers else None)
    time = FakeClock(NOW.timestamp())
    assert backfill(two_accounts(tmp_path), upstream, tmp_path / "out.om",
                    start=date(2026, 10, 1), time=time) == 0
    assert time.sleeps[0] >= 120  # Retry-After
    assert 5 <= time.sleeps[1] <= 20  # the exporter's back-off: 20 s jittered by [0.5, 1]
    assert len(upstream.windows) == 2 + 2


def test_the_hourly_cap_makes_the_run_wait_not_fail(tmp_path: Path) -> None:
    upstream = Upstream()
    time = FakeClock(NOW.timestamp())
    settings = two_accounts(tmp_path, **{"upstream.max-requests-per-hour": "2"})
    sent_at: list[float] = []
    inner = upstream.handle

    def timed(request: httpx.Request) -> httpx.Response:
        sent_at.append(time.monotonic())
        return inner(request)

    upstream.handle = timed  # type: ignore[method-assign]
    assert backfill(settings, upstream, tmp_path / "out.om", time=time) == 0
    assert len(sent_at) == 6
    for account_calls in (sent_at[:3], sent_at[3:]):
        assert account_calls[2] - account_calls[0] >= 3600  # never 3 in one hour


# -- files, resuming, progress ----------------------------------------------------------


@pytest.mark.slow  # months of output, written and read back: seconds each
def test_an_interrupted_run_resumes_with_only_the_missing_periods(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = two_accounts(tmp_path)
    output = tmp_path / "out.om"
    down = Upstream(fault=lambda a, b: httpx.Response(500, json={})
                    if a == utc(2026, 9, 1) else None)
    with caplog.at_level(logging.INFO, "exporter"):
        assert backfill(settings, down, output) == 1
    written = parse(output.read_text(encoding="utf-8"))  # what there is, September left out
    stamps = {stamp for points in written.values() for stamp, _ in points}
    assert min(stamps) < utc(2026, 9, 1).timestamp() < utc(2026, 10, 2).timestamp() <= \
        max(stamps)
    assert not [s for s in stamps if utc(2026, 9, 1).timestamp() < s < utc(2026, 10, 1).timestamp()]
    missing = [r.fields["missing"] for r in caplog.records  # type: ignore[attr-defined]
               if r.getMessage() == "period missing"]
    assert [m.split(" (")[0] for m in missing] == ["studio 2026-09-01/2026-10-01",
                                                   "mobile 2026-09-01/2026-10-01"]
    incomplete = next(r for r in caplog.records if r.getMessage() == "backfill incomplete")
    assert "run the same command again" in incomplete.fields["resume"]  # type: ignore[attr-defined]
    parts = sorted(p.name for p in (tmp_path / "out.om.parts").glob("*.om"))
    assert len(parts) == 4
    for part in (tmp_path / "out.om.parts").glob("*.om"):  # each one valid on its own
        assert part.read_text(encoding="utf-8").endswith("# EOF\n")
        parse(part.read_text(encoding="utf-8"))

    resumed = Upstream()
    assert backfill(settings, resumed, output) == 0
    assert resumed.windows == [(utc(2026, 9, 1), utc(2026, 10, 1))] * 2
    assert not (tmp_path / "out.om.parts").exists()

    fresh = tmp_path / "fresh.om"
    assert backfill(settings, Upstream(), fresh) == 0
    assert output.read_bytes() == fresh.read_bytes()


def test_ctrl_c_keeps_the_finished_periods_for_the_next_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = two_accounts(tmp_path)
    output = tmp_path / "out.om"

    def interrupt(start: datetime, end: datetime) -> httpx.Response | None:
        if start == utc(2026, 10, 1):
            raise KeyboardInterrupt
        return None

    with caplog.at_level(logging.INFO, "exporter"):
        assert backfill(settings, Upstream(fault=interrupt), output) == 130
    assert any(r.getMessage() == "backfill interrupted" for r in caplog.records)
    assert not output.exists()
    assert len(list((tmp_path / "out.om.parts").glob("*.om"))) == 2  # August, September
    resumed = Upstream()
    assert backfill(settings, resumed, output) == 0
    assert resumed.windows == [(utc(2026, 10, 1), utc(2026, 11, 1)),
                               (utc(2026, 8, 1), utc(2026, 9, 1)),
                               (utc(2026, 9, 1), utc(2026, 10, 1)),
                               (utc(2026, 10, 1), utc(2026, 11, 1))]


@pytest.mark.slow  # months of output, written and read back: seconds each
def test_parts_written_with_other_labels_are_not_reused(tmp_path: Path) -> None:
    settings = two_accounts(tmp_path)
    output = tmp_path / "out.om"
    down = Upstream(fault=lambda a, b: httpx.Response(401, json={})
                    if a == utc(2026, 10, 1) else None)
    assert backfill(settings, down, output) == 1
    again = Upstream()
    assert backfill(settings, again, output, labels={"job": "other"}) == 0
    assert len(again.windows) == 6
    assert 'job="other"' in output.read_text(encoding="utf-8")
    assert 'job="scenario-exporter"' not in output.read_text(encoding="utf-8")


def test_refused_credentials_cost_one_request_per_account(tmp_path: Path) -> None:
    upstream = Upstream(fault=lambda a, b: httpx.Response(401, json={}))
    assert backfill(two_accounts(tmp_path), upstream, tmp_path / "out.om") == 1
    assert len(upstream.windows) == 2


def test_stdout_output_and_the_summary(tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    stdout = io.BytesIO()
    with caplog.at_level(logging.INFO, "exporter"):
        assert backfill(two_accounts(tmp_path), Upstream(), "-", start=date(2026, 10, 1),
                        stdout=stdout) == 0
    text = stdout.getvalue().decode()
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    parse(text)
    sample_lines = [line for line in text.splitlines() if not line.startswith("#")]
    summary = next(r for r in caplog.records if r.getMessage() == "backfill complete")
    fields = summary.fields  # type: ignore[attr-defined]
    assert fields["series"] == len({line.rsplit(" ", 2)[0] for line in sample_lines})
    assert fields["samples"] == len(sample_lines)
    assert fields["bytes"] == len(stdout.getvalue())
    assert fields["first_sample"] == "2026-10-02T00:00:00.000Z"
    assert fields["last_sample"] == "2026-10-31T23:59:59.999Z"
    assert fields["periods"] == 2 and fields["written"] == 2 and fields["requests"] == 2
    assert list(tmp_path.glob("*.parts")) == []


@pytest.mark.slow  # months of output, written and read back: seconds each
def test_progress_is_a_bar_on_a_terminal_and_log_lines_otherwise(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    assert backfill(two_accounts(tmp_path), Upstream(), tmp_path / "a.om",
                    stderr=terminal) == 0
    assert "backfill: 100%" in terminal.getvalue() and "6/6" in terminal.getvalue()

    with caplog.at_level(logging.INFO, "exporter"):
        assert backfill(two_accounts(tmp_path), Upstream(), tmp_path / "b.om") == 0
    done = [r.fields["done"] for r in caplog.records  # type: ignore[attr-defined]
            if r.getMessage() == "period written"]
    assert done == [f"{k}/6" for k in range(1, 7)]
