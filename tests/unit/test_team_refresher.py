"""The team refresher with a controllable clock: which team, the refresh interval, one
refresh at a time, the shared hourly cap, and each endpoint failing alone with its own
back-off and one log line."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

import httpx
import pytest

from exporter.core.account import AccountConfig
from exporter.core.billing import AccountPeriod
from exporter.core.team import PROJECTS, TEAM, TEAM_LIMITS
from exporter.live.team import CAP_RETRY_SECONDS, TeamRefresher
from exporter.upstream.client import UsageClient
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import demo_transport
from exporter.upstream.demo_team import DEMO_TEAM_ID, teams_body
from exporter.upstream.politeness import BACKOFF_BASE_SECONDS, RequestCap
from exporter.upstream.team import TeamReader
from testkit.clock import FakeClock
from testkit.doubles import T0, MaxRandom

DEMO = DemoAccount(models=3, users=2, api_keys=1)
INTERVAL = 900.0
LIMITS = re.compile(r"/teams/[^/]+/limits$")


class Upstream:
    """The demo API, with the answers a test overrides by path, and every call seen."""

    def __init__(self, clock: FakeClock) -> None:
        self.calls: list[str] = []
        self.faults: list[tuple[re.Pattern[str], httpx.Response]] = []
        self._demo = demo_transport(DEMO, "k", "s", now=lambda: datetime.fromtimestamp(
            clock.wall(), timezone.utc))

    def fail(self, pattern: str, status: int, body: bytes = b'{"message": "no"}') -> None:
        self.faults.append((re.compile(pattern), httpx.Response(status, content=body)))

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(path)
        for pattern, response in self.faults:
            if pattern.search(path):
                return response
        return self._demo.handle_request(request)

    def count(self, pattern: str) -> int:
        return sum(1 for path in self.calls if re.search(pattern, path))


def make(clock: FakeClock, upstream: Upstream, *, team_id: str | None = None,
         cap: RequestCap | None = None, reserve: int = 0) -> TeamRefresher:
    account = AccountConfig(name="studio", api_key="k", api_secret="s", team_id=team_id)
    client = UsageClient("https://api.example/v1", 5,
                         transport=httpx.MockTransport(upstream.handle))
    return TeamRefresher(account, TeamReader(client, account, 1000),
                         cap or RequestCap(60, clock.monotonic), INTERVAL,
                         reserve=lambda: reserve, clock=clock.monotonic, wall=clock.wall,
                         spawn=lambda work: work(), rng=MaxRandom())


def test_the_one_team_the_key_sees_is_found_and_read() -> None:
    clock = FakeClock(T0)
    upstream = Upstream(clock)
    refresher = make(clock, upstream)
    assert refresher.maybe_refresh()
    view = refresher.view
    assert view.team_id == DEMO_TEAM_ID and view.candidates == ()
    assert view.endpoints == {TEAM: True, TEAM_LIMITS: True, PROJECTS: True}
    assert view.limits is not None and view.details is not None and view.projects
    assert upstream.count(r"/teams$") == 1
    # Once found, the team is not looked for again.
    clock.advance(INTERVAL)
    assert refresher.maybe_refresh()
    assert upstream.count(r"/teams$") == 1 and upstream.count(LIMITS.pattern) == 2


def test_a_configured_team_is_read_without_discovery() -> None:
    clock = FakeClock(T0)
    upstream = Upstream(clock)
    refresher = make(clock, upstream, team_id=DEMO_TEAM_ID)
    refresher.maybe_refresh()
    assert upstream.count(r"/teams$") == 0 and refresher.view.endpoints[TEAM_LIMITS]


def test_several_teams_leave_the_features_off_and_list_them_once(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0)
    upstream = Upstream(clock)
    two = teams_body(DEMO)
    two["teams"].append({**two["teams"][0], "id": "team_b"})
    upstream.faults.append((re.compile(r"/teams$"), httpx.Response(200, json=two)))
    refresher = make(clock, upstream)
    with caplog.at_level(logging.WARNING, "exporter.team"):
        refresher.maybe_refresh()
        clock.advance(INTERVAL)
        refresher.maybe_refresh()
    assert refresher.view.candidates == ("team_b", DEMO_TEAM_ID)
    assert refresher.view.team_id is None and refresher.view.limits is None
    assert upstream.calls == ["/v1/teams", "/v1/teams"]  # nothing else is asked
    lines = [r for r in caplog.records if "several teams" in r.getMessage()]
    assert len(lines) == 1 and "team_b" in str(lines[0].__dict__["fields"])


def test_a_forbidden_endpoint_is_down_alone_logged_once_and_retried_after_its_back_off(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0)
    upstream = Upstream(clock)
    upstream.fail(LIMITS.pattern, 403)
    refresher = make(clock, upstream, team_id=DEMO_TEAM_ID)
    with caplog.at_level(logging.WARNING, "exporter.team"):
        refresher.maybe_refresh()
        first = refresher.view
        assert first.endpoints == {TEAM_LIMITS: False, TEAM: True, PROJECTS: True}
        assert first.details is not None and first.limits is None
        # The back-off is 10 s after one failure (jitter at its top): before the
        # interval has passed nothing is called; after it, the limits are asked again.
        for _ in range(3):
            clock.advance(INTERVAL)
            refresher.maybe_refresh()
    failures = [r for r in caplog.records if r.getMessage() == "team endpoint failed"]
    assert len(failures) == 1
    assert "scope" in failures[0].__dict__["fields"]["error"]
    assert upstream.count(LIMITS.pattern) == 4
    # It recovers when upstream does, and keeps the other figures meanwhile.
    upstream.faults.clear()
    clock.advance(INTERVAL)
    refresher.maybe_refresh()
    assert refresher.view.endpoints[TEAM_LIMITS] and refresher.view.limits is not None


def test_the_back_off_holds_an_endpoint_past_the_interval() -> None:
    clock = FakeClock(T0)
    upstream = Upstream(clock)
    upstream.fail(LIMITS.pattern, 500)
    refresher = make(clock, upstream, team_id=DEMO_TEAM_ID)
    calls = []
    for _ in range(12):  # failures 1..n wait 10 s, 20 s, ... 1280 s, then 1800 s
        refresher.maybe_refresh()
        calls.append(upstream.count(LIMITS.pattern))
        clock.advance(INTERVAL)
    waits = BACKOFF_BASE_SECONDS * 2.0 ** 7  # 1280 s: the 8th failure's wait
    assert waits > INTERVAL
    # Every interval while the back-off is shorter than it; then every other one.
    assert calls[:8] == list(range(1, 9))
    assert calls[8] == calls[7] and calls[9] == calls[8] + 1


def test_a_missing_team_is_named(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0)
    upstream = Upstream(clock)
    refresher = make(clock, upstream, team_id="team_typo")
    with caplog.at_level(logging.WARNING, "exporter.team"):
        refresher.maybe_refresh()
    assert refresher.view.endpoints[TEAM_LIMITS] is False
    assert refresher.view.endpoints[TEAM] is False
    assert any("no such team" in r.__dict__["fields"]["error"] for r in caplog.records)


def test_one_refresh_per_interval_and_one_at_a_time() -> None:
    clock = FakeClock(T0)
    upstream = Upstream(clock)
    started: list[object] = []
    account = AccountConfig(name="studio", api_key="k", api_secret="s", team_id=DEMO_TEAM_ID)
    client = UsageClient("https://api.example/v1", 5,
                         transport=httpx.MockTransport(upstream.handle))
    refresher = TeamRefresher(account, TeamReader(client, account, 1000),
                              RequestCap(60, clock.monotonic), INTERVAL, clock=clock.monotonic,
                              wall=clock.wall, spawn=started.append, rng=MaxRandom())
    assert refresher.maybe_refresh() and not refresher.maybe_refresh()  # in flight
    started.pop()()  # the refresh runs
    clock.advance(INTERVAL - 1)
    assert not refresher.maybe_refresh()
    clock.advance(1)
    assert refresher.maybe_refresh()


def test_the_hourly_cap_is_shared_and_a_refresh_waits_for_room() -> None:
    clock = FakeClock(T0)
    upstream = Upstream(clock)
    cap = RequestCap(6, clock.monotonic)
    refresher = make(clock, upstream, team_id=DEMO_TEAM_ID, cap=cap)
    assert refresher.maybe_refresh()
    made = len(upstream.calls)  # limits, team and the projects' pages
    assert made > 3 and not cap.has_room(7 - made)
    # Usages took the rest of the hour's room: the next refresh does not start.
    while cap.try_acquire():
        pass
    clock.advance(INTERVAL)
    assert not refresher.maybe_refresh() and len(upstream.calls) == made


def test_a_refusal_by_the_cap_mid_refresh_changes_nothing_and_is_retried_soon() -> None:
    clock = FakeClock(T0)
    upstream = Upstream(clock)
    cap = RequestCap(2, clock.monotonic)  # discovery and limits: then the team is refused
    refresher = make(clock, upstream, cap=cap)
    assert refresher.maybe_refresh()
    view = refresher.view
    assert view.team_id == DEMO_TEAM_ID and view.limits is not None
    assert TEAM not in view.endpoints or view.endpoints[TEAM]  # refused: not down
    assert not refresher.due(clock.monotonic() + CAP_RETRY_SECONDS - 1)
    assert refresher.due(clock.monotonic() + CAP_RETRY_SECONDS)


def test_the_room_for_the_next_refresh_of_usages_is_kept() -> None:
    clock = FakeClock(T0)
    upstream = Upstream(clock)
    cap = RequestCap(6, clock.monotonic)
    # Limits, team and 3 pages of projects need 5 calls; usages' next refresh needs 2.
    refresher = make(clock, upstream, team_id=DEMO_TEAM_ID, cap=cap, reserve=2)
    refresher.maybe_refresh()  # the first refresh plans 1 page: 3 + 2 fit in 6
    assert upstream.calls and cap.has_room(1) and not cap.has_room(2)
    clock.advance(3600)  # the hour's calls expire
    made = len(upstream.calls)
    assert not refresher.maybe_refresh()  # now 5 + 2 > 6
    assert len(upstream.calls) == made and cap.has_room(6)


def test_only_the_first_read_starts_the_refresh_of_usages_that_waited_for_it() -> None:
    clock = FakeClock(T0)
    upstream = Upstream(clock)
    period = AccountPeriod("auto")
    done: list[int] = []
    account = AccountConfig(name="studio", api_key="k", api_secret="s", team_id=DEMO_TEAM_ID)
    client = UsageClient("https://api.example/v1", 5,
                         transport=httpx.MockTransport(upstream.handle))
    refresher = TeamRefresher(account, TeamReader(client, account, 1000),
                              RequestCap(60, clock.monotonic), INTERVAL, period=period,
                              on_done=lambda: done.append(1), clock=clock.monotonic,
                              wall=clock.wall, spawn=lambda work: work(), rng=MaxRandom())
    assert period.window(datetime.fromtimestamp(T0, timezone.utc)) is None
    refresher.maybe_refresh()
    window = period.window(datetime.fromtimestamp(clock.wall(), timezone.utc))
    assert done == [1] and window is not None and window.start.day == 17
    for _ in range(3):  # later reads: usages refresh on their own scrapes
        clock.advance(INTERVAL)
        refresher.maybe_refresh()
    assert done == [1] and upstream.count(LIMITS.pattern) == 4
