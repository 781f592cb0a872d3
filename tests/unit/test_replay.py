"""The backfill's replay of a period (exporter/backfill/replay.py): upstream's answer cut
into buckets, summed period-to-date, pieces joined, and written as the series the live
exporter would have served, each sample stamped at its bucket's end.

The demo account's totals over any window are known exactly (testkit.oracle).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from exporter.backfill.replay import SeriesWriter, join_pieces, period_to_date, split_into_buckets
from exporter.config.load import build_settings
from exporter.core.ledger import PeriodLedger
from exporter.core.period import PeriodWindow
from exporter.core.values import AccountView
from exporter.metrics.business import CollectorOptions
from exporter.metrics.collect import AccountsCollector
from exporter.upstream.demo import DemoAccount
from exporter.upstream.schema import UsageResponse
from exporter.upstream.summing import summarize
from testkit.backfill import KEY, LABELS, SECRET, utc
from testkit.oracle import model_totals

AUGUST = PeriodWindow(datetime(2026, 8, 1, tzinfo=timezone.utc),
                      datetime(2026, 9, 1, tzinfo=timezone.utc))


def demo_response(account: DemoAccount, window: PeriodWindow) -> UsageResponse:
    return UsageResponse.model_validate(account.response(window.start, window.end))


def test_each_bucket_gives_the_period_to_date_sums_upstream_has_for_it() -> None:
    account = DemoAccount(models=6, users=3, api_keys=1)
    usage = split_into_buckets(demo_response(account, AUGUST), AUGUST)
    snapshots = list(period_to_date(usage))
    assert len(snapshots) == 31  # daily buckets for a month-long window
    for day, snapshot in enumerate(snapshots, start=1):
        end = AUGUST.start + timedelta(days=day)
        assert snapshot.window == PeriodWindow(AUGUST.start, end)
        truth = model_totals(account, AUGUST.start, end)
        assert {m: t.cost for m, t in snapshot.models.items()} == \
            {m: t["cost"] for m, t in truth.items()}
        assert {m: t.jobs for m, t in snapshot.models.items()} == \
            {m: t["jobs"] for m, t in truth.items()}
        # Consumption per user is a whole-window figure upstream: the last sample only.
        assert bool(snapshot.users) == (day == 31)


def test_a_period_fetched_in_pieces_adds_up_to_the_whole() -> None:
    account = DemoAccount(models=4, users=2, api_keys=1)
    cut = utc(2026, 8, 17)
    whole = list(period_to_date(split_into_buckets(demo_response(account, AUGUST), AUGUST)))
    pieces = [split_into_buckets(demo_response(account, w), w)
              for w in (PeriodWindow(AUGUST.start, cut), PeriodWindow(cut, AUGUST.end))]
    joined = list(period_to_date(join_pieces(AUGUST, pieces)))
    assert [s.window for s in joined] == [s.window for s in whole]
    assert joined[-1].models == whole[-1].models and joined[-1].usages == whole[-1].usages
    # The demo rounds consumption per window to the cent: pieces add up to the cent.
    assert joined[-1].users.keys() == whole[-1].users.keys()
    for user_id, totals in whole[-1].users.items():
        assert joined[-1].users[user_id] == pytest.approx(totals, abs=0.02)


def test_the_last_sample_of_a_period_is_the_live_exposition_of_the_whole_period() -> None:
    """Same names, types, labels (plus the target labels), values and _created as /metrics."""
    account = DemoAccount(models=6, users=3, api_keys=1)
    settings_account = build_settings({}, {"SCENARIO_API_KEY": KEY,
                                            "SCENARIO_API_SECRET": SECRET}).accounts[0]
    response = demo_response(account, AUGUST)
    options = CollectorOptions(max_stale=float("inf"))
    writer = SeriesWriter(settings_account, options, LABELS, max_models=4, max_users=2)
    families = writer.period_families(split_into_buckets(response, AUGUST))

    live = PeriodLedger(4, 2).apply(summarize(response, AUGUST))
    view = AccountView(settings_account, snapshot=live.snapshot, folded=live.folded, up=True)
    expected = {(s.name, frozenset({**s.labels, **LABELS}.items())): s.value
                for f in AccountsCollector([view], AUGUST.end.timestamp(), options).collect()
                for s in f.samples}
    last = AUGUST.end.timestamp() - 0.001
    written = {(s.name, frozenset(s.labels.items())): s.value
               for f in families for s in f.samples if s.timestamp == last}
    assert written == expected
    assert any(name == "scenario_model_cost_creative_units_total"
               and ("model_id", "__other__") in labels for name, labels in written)
    types = {f.name: f.type for f in families}
    assert types["scenario_model_cost_creative_units"] == "counter"
    assert types["scenario_model"] == "info"
    assert not any(name.startswith("scenario_exporter_") for name in types)


def test_samples_are_stamped_at_bucket_ends_and_the_last_before_the_next_period() -> None:
    account_config = build_settings({}, {"SCENARIO_API_KEY": KEY,
                                         "SCENARIO_API_SECRET": SECRET}).accounts[0]
    usage = split_into_buckets(demo_response(DemoAccount(models=3, users=2), AUGUST), AUGUST)
    writer = SeriesWriter(account_config, CollectorOptions(), {}, 500, 1000)
    families = {f.name: f for f in writer.period_families(usage)}
    cost = families["scenario_model_cost_creative_units"]
    model = next(s.labels["model_id"] for s in cost.samples)
    stamps = [s.timestamp for s in cost.samples
              if s.name.endswith("_total") and s.labels["model_id"] == model]
    days = [(AUGUST.start + timedelta(days=d)).timestamp() for d in range(1, 31)]
    assert stamps == [*days, AUGUST.end.timestamp() - 0.001]
    created = {s.value for s in cost.samples if s.name.endswith("_created")}
    assert created == {AUGUST.start.timestamp()}
    starts = {s.value for s in families["scenario_period_start_timestamp_seconds"].samples}
    assert starts == {AUGUST.start.timestamp()}
