"""/metrics assembled from one encoding per account: the bytes of one encoding of
everything, only changed accounts encoded again, and a deadline that a scrape keeps."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.core.team import PlanLimits, TeamView
from exporter.core.values import AccountView
from exporter.metrics import exposition as exposition_module
from exporter.metrics.business import CollectorOptions
from exporter.metrics.collect import AccountsCollector
from exporter.metrics.exposition import Exposition, join_families, split_families
from exporter.metrics.own import Telemetry
from testkit.golden import NOW, OPENMETRICS, account, fixture_views

STEP = 1.0  # the fake monotonic clock moves this much each time it is read


def views_of(count: int) -> list[AccountView]:
    """*count* accounts served from the fixture, named account-00 …, then 'broken'."""
    studio, broken = fixture_views()
    return [*(replace(studio, account=account(f"account-{n:02d}", 100.0 * n))
              for n in range(count)), broken]


def teams_of(views: list[AccountView]) -> list[TeamView]:
    limits = PlanLimits(1000.0, 250.0, "pro", 50.0, 10.0)
    return [TeamView(v.account.name, 1, "team-1", (), {"team_limits": True}, limits,
                     NOW.timestamp()) for v in views]


class Scene:
    def __init__(self, count: int = 4) -> None:
        self.now = NOW.timestamp()
        self.views = views_of(count)
        self.teams = teams_of(self.views)
        self.registry = CollectorRegistry(auto_describe=False)
        self.telemetry = Telemetry(self.registry, [v.account.name for v in self.views])
        self.options = CollectorOptions(max_stale=3600.0, team_max_stale=1e9)
        self.ticks = 0.0
        self.exposition = Exposition(
            lambda: self.views, self.registry, self.options, wall=lambda: self.now,
            own_generation=lambda: self.telemetry.generation, teams=lambda: self.teams,
            clock=self.clock)

    def clock(self) -> float:
        self.ticks += STEP
        return self.ticks

    def whole(self, accept: str | None) -> bytes:
        """Everything encoded at once, as /metrics was before parts."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(AccountsCollector(
            self.views, self.now, self.options, own=self.registry, teams=self.teams,
            with_created=content_type.startswith("application/openmetrics-text")))


@pytest.fixture
def encodings(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The accounts of every encoding the exposition makes (a team part: [])."""
    made: list[list[str]] = []

    class Counting(AccountsCollector):
        def __init__(self, views: list[AccountView], *args: object, **kwargs: object) -> None:
            made.append([v.account.name for v in views])
            super().__init__(views, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(exposition_module, "AccountsCollector", Counting)
    return made


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_the_parts_make_the_bytes_of_one_encoding(accept: str | None) -> None:
    scene = Scene()
    assert scene.exposition.respond(accept, None)[1] == scene.whole(accept)


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_split_and_join_give_back_the_exposition(accept: str | None) -> None:
    whole = Scene().whole(accept)
    assert join_families([split_families(whole)], accept is not None) == whole


def test_only_the_account_that_changed_is_encoded_again(encodings: list[list[str]]) -> None:
    scene = Scene()
    scene.exposition.respond(None, None)
    assert len(encodings) == len(scene.views) + 1  # each account, then the teams
    encodings.clear()
    changed = scene.views[2]
    scene.views[2] = replace(changed, version=changed.version + 1, up=False)
    after = scene.exposition.respond(None, None)[1]
    assert encodings == [[changed.account.name]]
    assert after == scene.whole(None)
    assert f'scenario_up{{account="{changed.account.name}"}} 0.0'.encode() in after


def test_past_its_deadline_a_scrape_serves_what_is_encoded(
        encodings: list[list[str]]) -> None:
    scene = Scene(count=6)
    # The clock reads 1 when the encoding starts, then 2, 3 … before each account.
    first = scene.exposition.respond(None, None, deadline=4.5)[1]
    served = [v.account.name for v in scene.views if
              f'scenario_up{{account="{v.account.name}"}}'.encode() in first]
    # 'broken' has no data: withdrawn, it costs nothing to encode and always is.
    assert served == ["account-00", "account-01", "account-02", "broken"]
    assert b'scenario_plan_creative_units{account="account-05"}' in first  # teams: always
    encodings.clear()
    assert scene.exposition.respond(None, None)[1] == scene.whole(None)
    assert encodings == [["account-03"], ["account-04"], ["account-05"]]


def test_past_its_deadline_a_changed_account_is_served_as_it_was(
        encodings: list[list[str]]) -> None:
    scene = Scene()
    scene.exposition.respond(None, None)
    old = scene.views[0]
    scene.views[0] = replace(old, version=old.version + 1, up=False)
    stale = scene.exposition.respond(None, None, deadline=0.0)[1]
    assert f'scenario_up{{account="{old.account.name}"}} 1.0'.encode() in stale
    fresh = scene.exposition.respond(None, None, deadline=scene.ticks + 10)[1]
    assert f'scenario_up{{account="{old.account.name}"}} 0.0'.encode() in fresh


def test_withdrawn_data_is_never_served_past_the_deadline() -> None:
    scene = Scene()
    assert b"scenario_model_cost_creative_units_total{" in scene.exposition.respond(None, None)[1]
    scene.now += 3601
    body = scene.exposition.respond(None, None, deadline=0.0)[1]
    assert b"scenario_model_cost_creative_units_total{" not in body
    assert body == scene.whole(None)


def test_the_reserve_counts_the_accounts_to_encode() -> None:
    scene = Scene(count=9)  # and 'broken': ten accounts
    assert scene.exposition.render_reserve(None, 60.0) == pytest.approx(10 * 0.02)
    assert scene.exposition.render_reserve(None, 0.1) == 0.1
    scene.exposition.respond(None, None)  # ten encodings in one clock step
    assert scene.exposition.render_reserve(None, 60.0) == 0.0
    # The other format: ten accounts at the mean of that render, a tenth of a step.
    assert scene.exposition.render_reserve(OPENMETRICS, 60.0) == pytest.approx(STEP)


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_the_parts_kept_share_the_bytes_of_the_exposition(accept: str | None) -> None:
    scene = Scene()
    body = scene.exposition.respond(accept, None)[1]
    # Kept for the next scrape: views of the body, not its bytes a second time (at
    # 100 accounts x 50 models, 17 MB held for a 16 MB body instead of 32 MB).
    kept = [chunk for parts in scene.exposition._parts.values() for part in parts.values()
            for pair in part.sections.values() for chunk in pair]
    assert kept and all(isinstance(chunk, memoryview) and chunk.obj is body for chunk in kept)
