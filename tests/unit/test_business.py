"""Collector golden test: a fixture snapshot, frozen time, exact bytes, promtool.

Regenerate after an intended change with ``pytest tests/test_collector_golden.py
--update-golden`` and review the diff of ``tests/data/*.prom``.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from freezegun import freeze_time
from prometheus_client import CollectorRegistry

from exporter.core.period import PeriodKind, PeriodWindow
from exporter.core.values import UsageSnapshot
from exporter.metrics.business import CollectorOptions
from exporter.metrics.collect import AccountsCollector
from exporter.metrics.exposition import Exposition
from exporter.metrics.own import Telemetry
from testkit.exposition import families
from testkit.golden import DATA, NOW, OPENMETRICS, WINDOW, fixture_views
from testkit.tools import require_tool


def render(openmetrics: bool, options: CollectorOptions | None = None) -> bytes:
    """The business series as /metrics serves them (an empty registry of exporter series)."""
    exposition = Exposition(fixture_views, CollectorRegistry(),
                            options or CollectorOptions(), wall=lambda: NOW.timestamp())
    headers, body = exposition.respond(OPENMETRICS if openmetrics else None, None)
    content_type = dict(headers)["Content-Type"]
    assert content_type.startswith("application/openmetrics-text" if openmetrics
                                   else "text/plain")
    return body


def compare_golden(name: str, actual: bytes, update: bool) -> None:
    path = DATA / name
    if update:
        path.write_bytes(actual)
    assert path.exists(), f"{path} is missing: run pytest --update-golden"
    assert actual.decode() == path.read_text(), f"exposition differs from {path}"


@freeze_time(NOW)
def test_text_exposition_matches_golden_file(update_golden: bool) -> None:
    compare_golden("golden.prom", render(openmetrics=False), update_golden)


@freeze_time(NOW)
def test_openmetrics_exposition_matches_golden_file(update_golden: bool) -> None:
    compare_golden("golden.om.txt", render(openmetrics=True), update_golden)


@freeze_time(NOW)
def test_user_identity_labels_only_when_opted_in() -> None:
    without = render(False).decode()
    with_identity = render(False, CollectorOptions(user_identity=True)).decode()
    assert "grace@studio.example" not in without and "user_name" not in without
    assert 'email="grace@studio.example"' in with_identity
    assert 'user_name="Grace Hopper"' in with_identity
    # folded users have no info series of their own
    assert "user_1" not in with_identity


@freeze_time(NOW)
def test_golden_values_are_the_fixture_sums() -> None:
    registry = CollectorRegistry()
    registry.register(AccountsCollector(fixture_views(), NOW.timestamp(), CollectorOptions(),
                                        own=CollectorRegistry()))
    value = registry.get_sample_value
    labels = {"account": "studio", "model_id": "model_flux-dev"}
    assert value("scenario_model_cost_creative_units_total", labels) == 1000.0
    assert value("scenario_model_cost_creative_units_created", labels) == \
        WINDOW.start.timestamp()
    # The cap keeps the highest spender on first sight; model_abc123 (309.75 CU)
    # and model_quiet (0) are summed, exactly, into __other__.
    other = {"account": "studio", "model_id": "__other__"}
    assert value("scenario_model_cost_creative_units_total", other) == 309.75
    assert value("scenario_model_discount_creative_units_total", other) == 14.75
    assert value("scenario_model_jobs_total", other) == 62.0
    assert value("scenario_model_cost_creative_units_total",
                 {"account": "studio", "model_id": "model_abc123"}) is None
    assert value("scenario_exporter_folded_series",
                 {"account": "studio", "section": "models"}) == 2.0
    assert value("scenario_exporter_folded_series",
                 {"account": "studio", "section": "users"}) == 1.0
    assert value("scenario_user_discount_creative_units_total",
                 {"account": "studio", "user_id": "__other__"}) == 15.0
    assert value("scenario_user_discount_creative_units_total",
                 {"account": "studio", "user_id": "user_2"}) == 4.75
    assert value("scenario_up", {"account": "studio"}) == 1.0
    assert value("scenario_up", {"account": "broken"}) == 0.0
    assert value("scenario_budget_creative_units", {"account": "studio"}) == 5000.0
    assert value("scenario_budget_creative_units", {"account": "broken"}) is None
    assert value("scenario_data_as_of_timestamp_seconds", {"account": "studio"}) == \
        NOW.timestamp()
    assert value("scenario_model_info", {"account": "studio", "model_id": "model_flux-dev",
                                         "model_name": 'Flux "dev" \\ base'}) == 1.0
    # SDK 2.4's figures: CU per kind of work, a refund as a credit, never a negative
    # counter; an action upstream does not price (upscale) has no CU series.
    usage = {"account": "studio", "usage_name": "refunds"}
    assert value("scenario_usage_cost_creative_units_total", usage) == 0.0
    assert value("scenario_usage_credit_creative_units_total", usage) == 35.0
    assert value("scenario_usage_credit_by_api_key_creative_units_total", usage) == 10.0
    assert value("scenario_usage_cost_creative_units_total",
                 {"account": "studio", "usage_name": "upscale"}) is None
    assert value("scenario_quality_gate_assets_total",
                 {"account": "studio", "verdict": "total"}) == 62.0
    # user_1 is folded into __other__ by the user cap: so are its actions
    assert value("scenario_user_consumption_by_action_creative_units_total",
                 {"account": "studio", "user_id": "__other__", "action": "quality-gate"}) == 50.0


@pytest.mark.parametrize(("period", "start", "end"), [
    ("month", datetime(2026, 11, 1, tzinfo=timezone.utc),
     datetime(2026, 12, 1, tzinfo=timezone.utc)),
    ("month", datetime(2026, 12, 15, tzinfo=timezone.utc),  # --period.anchor-day 15
     datetime(2027, 1, 15, tzinfo=timezone.utc)),
    ("day", datetime(2026, 11, 3, tzinfo=timezone.utc),
     datetime(2026, 11, 4, tzinfo=timezone.utc)),
])
def test_period_end_is_the_start_of_the_next_period(period: PeriodKind, start: datetime,
                                                    end: datetime) -> None:
    """What the projection and the "period ends in" panel count down to."""
    view = replace(fixture_views()[0], snapshot=UsageSnapshot(PeriodWindow(start, start)))
    registry = CollectorRegistry()
    registry.register(AccountsCollector([view], start.timestamp(),
                                        CollectorOptions(period=period)))
    assert registry.get_sample_value("scenario_period_end_timestamp_seconds",
                                     {"account": "studio"}) == end.timestamp()
    assert registry.get_sample_value("scenario_period_start_timestamp_seconds",
                                     {"account": "studio"}) == start.timestamp()


def test_business_series_are_withdrawn_past_max_stale() -> None:
    views = fixture_views()
    options = CollectorOptions(max_stale=3600)
    own = CollectorRegistry()
    fresh = {f.name for f in AccountsCollector(views, NOW.timestamp() + 3599, options,
                                                own=own).collect() if f.samples}
    stale = {f.name: f for f in AccountsCollector(views, NOW.timestamp() + 3601, options,
                                                   own=own).collect()}
    assert "scenario_model_cost_creative_units" in fresh
    for name, family in stale.items():
        if name.startswith("scenario_") and family.type in ("counter", "info"):
            assert not family.samples, f"{name} should be withdrawn"
    # what tells the story stays: up, the age of the data, the exporter series
    assert stale["scenario_up"].samples
    assert stale["scenario_data_as_of_timestamp_seconds"].samples
    assert stale["scenario_exporter_folded_series"].samples


def _promtool_check(text: bytes) -> None:
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == "", result.stdout.decode()


@freeze_time(NOW)
def test_golden_exposition_passes_promtool() -> None:
    _promtool_check(render(openmetrics=False))


@freeze_time(NOW)
@pytest.mark.parametrize("gzip", [False, True])
@pytest.mark.parametrize("accept", [None, "application/openmetrics-text; version=1.0.0"])
def test_full_scrape_body_parses_and_passes_promtool(accept: str | None, gzip: bool) -> None:
    registry = CollectorRegistry(auto_describe=False)
    telemetry = Telemetry(registry, ["studio", "broken"])
    telemetry.record_request("studio", "200", 0.3, 12345)
    telemetry.refresh_failures.labels("broken", "auth").inc()
    exposition = Exposition(fixture_views, registry, CollectorOptions(),
                            wall=lambda: NOW.timestamp())
    headers, body = exposition.respond(accept, "gzip" if gzip else None)
    content_type = dict(headers)["Content-Type"]
    if gzip:
        import gzip as gzip_module
        body = gzip_module.decompress(body)
    text = body.decode()
    if accept:
        assert content_type.startswith("application/openmetrics-text")
        assert text.endswith("# EOF\n") and text.count("# EOF") == 1
        names = {f.name for f in families(text, openmetrics=True)}
    else:
        assert content_type.startswith("text/plain")
        names = {f.name for f in families(text, openmetrics=False)}
        _promtool_check(body)
    assert {"scenario_model_cost_creative_units", "scenario_exporter_build_info",
            "scenario_exporter_upstream_requests"} <= names
    assert "scenario_exporter_scrape_duration_seconds" not in text  # dropped: Prometheus
    # records scrape_duration_seconds per target itself
