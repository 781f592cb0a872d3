"""The production /metrics answer: one render per change of what a scrape shows, per format."""

from __future__ import annotations

import gzip
import subprocess
from collections.abc import Iterable
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from exporter.core.errors import FailureReason
from exporter.core.values import AccountView
from exporter.metrics.business import CollectorOptions
from exporter.metrics.exposition import Exposition
from exporter.metrics.own import Telemetry
from testkit.golden import NOW, OPENMETRICS, fixture_views
from testkit.tools import require_tool


class CountingCollector:
    """Counts how often a render collects the exporter's registry."""

    def __init__(self) -> None:
        self.collected = 0

    def collect(self) -> Iterable[Metric]:
        self.collected += 1
        return []


class Scene:
    """/metrics over views and a wall clock that the test changes."""

    def __init__(self, max_stale: float = 7200.0) -> None:
        self.views = fixture_views()
        self.now = NOW.timestamp()
        self.registry = CollectorRegistry(auto_describe=False)
        self.counting = CountingCollector()
        self.registry.register(self.counting)
        self.telemetry = Telemetry(self.registry, ["studio", "broken"])
        self.exposition = Exposition(
            lambda: self.views, self.registry, CollectorOptions(max_stale=max_stale),
            wall=lambda: self.now, own_generation=lambda: self.telemetry.generation)

    def scrape(self, accept: str | None = None, packed: bool = False) -> bytes:
        return self.exposition.respond(accept, "gzip" if packed else None)[1]


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_scrapes_are_served_the_bytes_rendered_once(accept: str | None) -> None:
    scene = Scene()
    first = scene.scrape(accept)
    for _ in range(3):
        assert scene.scrape(accept) is first
    packed = scene.scrape(accept, packed=True)
    assert scene.scrape(accept, packed=True) is packed
    assert gzip.decompress(packed) == first
    assert scene.counting.collected == 1


def test_each_format_is_rendered_on_its_own() -> None:
    scene = Scene()
    text, openmetrics = scene.scrape(), scene.scrape(OPENMETRICS)
    assert scene.counting.collected == 2
    assert openmetrics.endswith(b"# EOF\n") and b"# EOF" not in text
    assert b"scenario_model_cost_creative_units_created{" in openmetrics
    assert b"_created{" not in text  # one more series per counter in the text format
    assert scene.scrape() is text and scene.scrape(OPENMETRICS) is openmetrics


def test_a_change_of_the_exporter_counters_renders_again() -> None:
    scene = Scene()
    before = scene.scrape(packed=True)
    scene.telemetry.count_failure("broken", FailureReason.AUTH)
    after = gzip.decompress(scene.scrape(packed=True))
    assert scene.counting.collected == 2
    line = b'scenario_exporter_refresh_failures_total{account="broken",reason="auth"}'
    assert line + b" 0.0\n" in gzip.decompress(before)
    assert line + b" 1.0\n" in after


def test_a_new_view_renders_again() -> None:
    scene = Scene()
    before = scene.scrape()
    studio: AccountView = scene.views[0]
    scene.views = [replace(studio, version=2, up=False), scene.views[1]]
    after = scene.scrape()
    assert b'scenario_up{account="studio"} 1.0' in before
    assert b'scenario_up{account="studio"} 0.0' in after


def test_data_past_max_stale_is_withdrawn_at_the_next_scrape() -> None:
    scene = Scene(max_stale=3600)
    assert b"scenario_model_cost_creative_units_total{" in scene.scrape()
    scene.now += 3599
    scene.scrape()
    assert scene.counting.collected == 1  # nothing changed yet
    scene.now += 2
    assert b"scenario_model_cost_creative_units_total{" not in scene.scrape()
    assert scene.counting.collected == 2


def test_without_a_generation_every_scrape_renders() -> None:
    registry = CollectorRegistry(auto_describe=False)
    counting = CountingCollector()
    registry.register(counting)
    exposition = Exposition(fixture_views, registry, CollectorOptions(), wall=NOW.timestamp)
    exposition.respond(None, None)
    exposition.respond(None, None)
    assert counting.collected == 2


def test_gzip_command_accepts_the_body() -> None:
    scene = Scene()
    packed = scene.scrape(OPENMETRICS, packed=True)
    gzip_tool = require_tool("gzip")
    assert subprocess.run([gzip_tool, "-t"], input=packed, timeout=30).returncode == 0
    assert subprocess.run([gzip_tool, "-dc"], input=packed, capture_output=True,
                          timeout=30).stdout == scene.scrape(OPENMETRICS)
