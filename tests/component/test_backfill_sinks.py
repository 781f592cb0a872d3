"""Where a backfill delivers: a remote-write server and a FOCUS file, beside the
OpenMetrics file, from one run.

The demo account is the upstream and a transport stands for the remote-write
server (the real servers are in tests/process/test_backfill_remote_write.py): the
samples pushed must be the very samples of the file, each series in time order
across requests; a refused push makes its period missing, with the server's
words, and the run goes on; the FOCUS rows add up to upstream's sums.
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from exporter.backfill.remote_write import RemoteWriteOptions
from testkit.backfill import (
    LABELS,
    PushReceiver,
    Upstream,
    backfill,
    parse,
    two_accounts,
    utc,
)
from testkit.oracle import model_totals

PUSH = RemoteWriteOptions("http://receiver.test/api/v1/write", max_samples_per_request=500)


def test_the_pushed_samples_are_the_files_and_each_series_in_time_order(tmp_path: Path) -> None:
    receiver = PushReceiver()
    output = tmp_path / "out.om"
    assert backfill(two_accounts(tmp_path), Upstream(), output, start=date(2026, 9, 1),
                    remote_write=PUSH, push_transport=receiver.transport) == 0
    assert len(receiver.requests) > 4  # batches of 500 samples
    assert all(sum(len(s) for _, s in request) <= 500 for request in receiver.requests)
    pushed = receiver.series()
    text = output.read_text(encoding="utf-8")
    written = parse(text)  # which keeps one _created point per series: compared by lines
    assert {k: v for k, v in pushed.items() if not k[0].endswith("_created")} == \
        {k: v for k, v in written.items() if not k[0].endswith("_created")}
    assert sum(len(v) for k, v in pushed.items() if k[0].endswith("_created")) == \
        sum(1 for line in text.splitlines() if "_created{" in line and line[0] != "#")
    for points in pushed.values():
        stamps = [t for t, _ in points]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    # Labels sorted by name in every series, as remote write asks.
    for request in receiver.requests:
        for labels, _ in request:
            assert list(labels) == sorted(labels)


def test_a_refused_push_makes_its_period_missing_and_the_run_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    refusal = httpx.Response(400, text="out of bounds\n")
    receiver = PushReceiver(lambda n: refusal if n == 0 else None)
    with caplog.at_level(logging.INFO, "exporter"):
        assert backfill(two_accounts(tmp_path), Upstream(), None, start=date(2026, 9, 1),
                        remote_write=PUSH, push_transport=receiver.transport) == 1
    missing = [r.fields["missing"] for r in caplog.records  # type: ignore[attr-defined]
               if r.getMessage() == "period missing"]
    assert len(missing) == 1 and missing[0].startswith("studio 2026-09-01/2026-10-01 "
                                                       "(remote_write: ")
    assert "HTTP 400: out of bounds" in missing[0]
    summary = next(r.fields for r in caplog.records  # type: ignore[attr-defined]
                   if r.getMessage() == "backfill incomplete")
    assert (summary["written"], summary["missing"]) == (3, 1)
    assert summary["remote_write_samples"] == sum(
        len(s) for request in receiver.requests for _, s in request)


def test_focus_rows_add_up_to_upstreams_sums_per_month(tmp_path: Path) -> None:
    upstream = Upstream()
    output = tmp_path / "cost.csv"
    settings = two_accounts(tmp_path, **{"price.per-creative-unit": "0.01",
                                         "price.currency": "EUR"})
    assert backfill(settings, upstream, output, start=date(2026, 9, 1),
                    output_format="focus") == 0
    rows = list(csv.DictReader(io.StringIO(output.read_text(encoding="utf-8"))))
    for start, end in ((utc(2026, 9, 1), utc(2026, 10, 1)), (utc(2026, 10, 1), utc(2026, 11, 1))):
        truth = model_totals(upstream.account, start, end)
        month = [r for r in rows if r["BillingAccountName"] == "studio"
                 and r["BillingPeriodStart"] == f"{start:%Y-%m-%dT%H:%M:%SZ}"]
        assert {r["ResourceId"] for r in month} == {m for m, t in truth.items() if t["jobs"]}
        for model_id, totals in truth.items():
            net = sum(Decimal(r["PricingCurrencyEffectiveCost"]) for r in month
                      if r["ResourceId"] == model_id)
            jobs = sum(Decimal(r["ConsumedQuantity"]) for r in month
                       if r["ResourceId"] == model_id)
            assert float(net) == pytest.approx(totals["cost"] - totals["discount"], rel=1e-12)
            assert jobs == totals["jobs"]
    assert {r["BillingCurrency"] for r in rows} == {"EUR"}
    assert all(Decimal(r["BilledCost"]) == Decimal(r["PricingCurrencyEffectiveCost"])
               * Decimal("0.01") for r in rows)
    # The demo key reads exactly one team: the billing account is the team.
    assert {r["BillingAccountId"] for r in rows} == {"team_demo"}
    assert LABELS  # the OpenMetrics labels play no part in FOCUS rows
