"""A year by default, and every period reported by name while the run goes on.

``scenario-exporter backfill`` without ``--start`` writes the 12 whole periods
before the current one; a period upstream has no data for is reported and
skipped, one it refuses is reported with its reason, and the summary and the
exit code say how many were written. The demo account is the upstream (through
the real client, as an httpx transport); clocks and sleeps are fakes.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from testkit.backfill import LABELS, Upstream, backfill, parse, two_accounts, utc
from testkit.oracle import model_totals

pytestmark = pytest.mark.slow  # a year of two accounts, written and read back: seconds

MONTHS = [utc(2025 + (10 + k) // 12, (10 + k) % 12 + 1, 1) for k in range(13)]  # Nov..Nov


def _fields(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, object]]:
    return [r.fields for r in caplog.records  # type: ignore[attr-defined]
            if r.getMessage() == message]


def test_without_dates_the_twelve_periods_before_the_current_one(tmp_path: Path) -> None:
    upstream = Upstream()
    output = tmp_path / "year.om"
    assert backfill(two_accounts(tmp_path), upstream, output, start=None, end=None) == 0
    months = list(zip(MONTHS, MONTHS[1:], strict=False))
    assert upstream.windows == months * 2  # one request per month and account
    series = parse(output.read_text(encoding="utf-8"))
    for start, end in (months[0], months[5], months[-1]):
        for model_id, truth in model_totals(upstream.account, start, end).items():
            key = ("scenario_model_cost_creative_units_total", frozenset(
                {"account": "studio", "model_id": model_id, **LABELS}.items()))
            last = [v for t, v in series[key] if start.timestamp() < t < end.timestamp()][-1]
            assert last == truth["cost"], (start, model_id)


def test_empty_and_refused_periods_are_named_and_the_run_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def young_account(start: datetime, end: datetime) -> httpx.Response | None:
        if end <= utc(2026, 3, 1):  # no activity before March
            return httpx.Response(200, json={})
        if start == utc(2026, 5, 1):
            return httpx.Response(400, json={"message": "startDate is out of range"})
        return None

    settings = two_accounts(tmp_path)
    output = tmp_path / "year.om"
    with caplog.at_level(logging.INFO, "exporter"):
        assert backfill(settings, Upstream(fault=young_account), output,
                        start=None, end=None) == 1
    assert [f["empty"] for f in _fields(caplog, "period empty")] == [
        f"{account} {a:%Y-%m-%d}/{b:%Y-%m-%d}: no data upstream"
        for account in ("studio", "mobile") for a, b in zip(MONTHS[:4], MONTHS[1:5],
                                                           strict=True)]
    missing = [f["missing"] for f in _fields(caplog, "period missing")]
    assert [m.split(" (")[0] for m in missing] == ["studio 2026-05-01/2026-06-01",
                                                   "mobile 2026-05-01/2026-06-01"]
    assert all("HTTP 400" in m and "startDate is out of range" in m for m in missing), missing
    summary = _fields(caplog, "backfill incomplete")[0]
    assert (summary["periods"], summary["written"], summary["empty_upstream"],
            summary["missing"], summary["kept"]) == (24, 14, 8, 2, 0)
    # The file holds what was written: March to October but May.
    stamps = sorted({t for points in parse(output.read_text(encoding="utf-8")).values()
                     for t, _ in points})
    assert utc(2026, 3, 1).timestamp() < stamps[0] <= utc(2026, 3, 2).timestamp()
    assert not [t for t in stamps
                if utc(2026, 5, 1).timestamp() < t < utc(2026, 6, 1).timestamp()]

    caplog.clear()
    again = Upstream(fault=lambda a, b: httpx.Response(200, json={})
                     if b <= utc(2026, 3, 1) else None)
    with caplog.at_level(logging.INFO, "exporter"):
        assert backfill(settings, again, output, start=None, end=None) == 0
    # Only what is not kept is asked again: the refused month, and the empty ones.
    assert sorted(set(again.windows)) == sorted(
        [(utc(2026, 5, 1), utc(2026, 6, 1))] + list(zip(MONTHS[:4], MONTHS[1:5], strict=True)))
    summary = _fields(caplog, "backfill complete")[0]
    assert (summary["written"], summary["kept"], summary["empty_upstream"]) == (2, 14, 8)
    assert not (tmp_path / "year.om.parts").exists()
