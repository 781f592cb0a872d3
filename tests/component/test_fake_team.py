"""The loopback fake (testkit.fake_upstream) serves Scenario's team endpoints over HTTP as
the SDK 2.4 reads them, records every call, and misbehaves in its team modes.

- With the official SDK over loopback: ``teams.list``, ``teams.retrieve_limits``,
  ``teams.retrieve`` and ``projects.list`` followed to its end (pages shorter than
  asked: more than one request), at the fake's clock, sped up as usages are.
- The team modes hit the team endpoints only (usages answer normally), and the
  usages modes hit usages only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from scenario_sdk import InternalServerError, NotFoundError, PermissionDeniedError, Scenario
from scenario_sdk.types import (
    ProjectListResponse,
    TeamListResponse,
    TeamRetrieveLimitsResponse,
    TeamRetrieveResponse,
)

from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_team import DEMO_TEAM_ID, limits_body, team_body, used
from testkit.fake_upstream import MODES, SECOND_TEAM_ID, FakeUpstream

KEY, SECRET = "fake-team-key", "fake-team-secret"
NOW = datetime(2026, 11, 20, 12, 30, 15, tzinfo=timezone.utc)
TEAM_MODES = ("team-403", "team-404", "two-teams", "team-garbage", "projects-page-500")
USAGES = {"startDate": "2026-11-01T00:00:00.000Z", "endDate": "2026-11-02T00:00:00.000Z",
          "type": "model-usages"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    """One fake for the module (stopping one takes half a second)."""
    with FakeUpstream(DemoAccount(models=4, users=2, api_keys=1), KEY, SECRET) as upstream:
        yield upstream


@pytest.fixture
def fake(server: FakeUpstream) -> FakeUpstream:
    """The module's fake, at NOW, in mode ok, with no request recorded."""
    state = server.state
    state.mode, state.clock, state.speed = "ok", NOW.timestamp, 1.0
    with state.lock:
        state.requests.clear()
    return server


@pytest.fixture
def client(fake: FakeUpstream) -> Iterator[Scenario]:
    with httpx.Client(trust_env=False) as http:
        yield Scenario(api_key=KEY, api_secret=SECRET, base_url=fake.url, max_retries=0,
                       http_client=http)


@pytest.fixture
def http(fake: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, auth=(KEY, SECRET), trust_env=False) as plain:
        yield plain


def test_the_sdk_reads_the_team_endpoints_of_the_fake(fake: FakeUpstream,
                                                      client: Scenario) -> None:
    account = fake.state.account
    (team,) = client.teams.list().teams
    assert team.id == DEMO_TEAM_ID
    limits = client.teams.retrieve_limits(team.id)
    assert limits.model_dump(by_alias=True, exclude_unset=True) == limits_body(account, NOW)
    details = client.teams.retrieve(team.id)
    assert details.model_dump(by_alias=True, exclude_unset=True) == team_body(account, NOW)
    projects = list(client.projects.list(page_size=10))
    assert len(projects) == 5 and {p.team_id for p in projects} == {DEMO_TEAM_ID}
    assert (fake.calls("teams"), fake.calls("team_limits"), fake.calls("team"),
            fake.calls("projects"), fake.calls("usages")) == (1, 1, 1, 3, 0)
    pages = [r for r in fake.state.requests if r.path == "/v1/projects"]
    assert [r.params.get("pageSize") for r in pages] == ["10"] * 3
    assert "paginationToken" not in pages[0].params
    assert all(r.params["paginationToken"] for r in pages[1:])


def test_the_team_bodies_validate_under_the_sdk(http: httpx.Client) -> None:
    TeamListResponse.model_validate(http.get("/teams").json())
    TeamRetrieveLimitsResponse.model_validate(http.get("/teams/team_demo/limits").json())
    TeamRetrieveResponse.model_validate(http.get("/teams/team_demo").json())
    page = http.get("/projects", params={"pageSize": "3"}).json()
    assert len(page["projects"]) == 2 and page["nextPaginationToken"]
    for item in page["projects"]:
        ProjectListResponse.model_validate(item)


def test_the_fake_answers_at_its_clock_sped_up_as_usages(fake: FakeUpstream,
                                                         http: httpx.Client) -> None:
    account = fake.state.account
    assert http.get("/teams/team_demo/limits").json()["values"]["creativeUnits"] == used(
        account, NOW)
    fake.state.clock = (NOW + timedelta(days=30)).timestamp
    period = http.get("/teams/team_demo/limits").json()["period"]
    assert period["start"] == "2026-12-17T09:00:00.000Z"
    fake.state.origin, fake.state.speed = NOW.timestamp(), 60.0
    fake.state.clock = (NOW + timedelta(minutes=1)).timestamp
    assert fake.state.now() == NOW + timedelta(hours=1)
    assert http.get("/teams/team_demo/limits").json()["values"]["creativeUnits"] == used(
        account, NOW + timedelta(hours=1))


def test_unknown_teams_and_paths_are_404_and_credentials_checked(http: httpx.Client,
                                                                 fake: FakeUpstream) -> None:
    for path in ("/teams/team_other", "/teams/team_other/limits", "/teams/team_demo/x"):
        answer = http.get(path)
        assert answer.status_code == 404 and "message" in answer.json(), path
    assert http.get("/teams", auth=(KEY, "wrong")).status_code == 401
    assert fake.calls("team") == 1 and fake.calls("team_limits") == 1


def usages_ok(http: httpx.Client) -> bool:
    answer = http.get("/usages", params=USAGES)
    return answer.status_code == 200 and bool(answer.json()["modelUsages"])


def test_team_403_refuses_every_team_endpoint(fake: FakeUpstream, client: Scenario,
                                              http: httpx.Client) -> None:
    fake.set_mode("team-403")
    for call in (client.teams.list, lambda: client.teams.retrieve(DEMO_TEAM_ID),
                 lambda: client.teams.retrieve_limits(DEMO_TEAM_ID),
                 lambda: list(client.projects.list(page_size=10))):
        with pytest.raises(PermissionDeniedError):
            call()
    assert usages_ok(http)


def test_team_404_answers_as_for_an_unknown_team(fake: FakeUpstream, client: Scenario,
                                                 http: httpx.Client) -> None:
    fake.set_mode("team-404")
    assert [t.id for t in client.teams.list().teams] == [DEMO_TEAM_ID]
    with pytest.raises(NotFoundError):
        client.teams.retrieve(DEMO_TEAM_ID)
    with pytest.raises(NotFoundError):
        client.teams.retrieve_limits(DEMO_TEAM_ID)
    assert len(list(client.projects.list())) == 5
    assert usages_ok(http)


def test_two_teams_lists_a_second_team(fake: FakeUpstream, client: Scenario,
                                       http: httpx.Client) -> None:
    fake.set_mode("two-teams")
    TeamListResponse.model_validate(http.get("/teams").json())
    assert [t.id for t in client.teams.list().teams] == [DEMO_TEAM_ID, SECOND_TEAM_ID]
    assert client.teams.retrieve(DEMO_TEAM_ID).team.id == DEMO_TEAM_ID
    with pytest.raises(NotFoundError):
        client.teams.retrieve(SECOND_TEAM_ID)
    assert usages_ok(http)


@pytest.mark.parametrize(("path", "schema"), [
    ("/teams", TeamListResponse), ("/teams/team_demo", TeamRetrieveResponse),
    ("/teams/team_demo/limits", TeamRetrieveLimitsResponse), ("/projects", None)])
def test_team_garbage_answers_200_outside_the_schema(fake: FakeUpstream, http: httpx.Client,
                                                     path: str, schema: Any) -> None:
    fake.set_mode("team-garbage")
    answer = http.get(path)
    assert answer.status_code == 200
    with pytest.raises((ValidationError, json.JSONDecodeError)):
        body = json.loads(answer.content)
        if schema is None:
            for item in body["projects"]:
                ProjectListResponse.model_validate(item)
        else:
            schema.model_validate(body)
    assert usages_ok(http)


def test_projects_can_fail_in_the_middle_of_the_pagination(fake: FakeUpstream,
                                                          client: Scenario) -> None:
    fake.set_mode("projects-page-500")
    with pytest.raises(InternalServerError):
        list(client.projects.list(page_size=10))
    assert fake.calls("projects") == 2
    assert client.teams.retrieve(DEMO_TEAM_ID).team.id == DEMO_TEAM_ID


@pytest.mark.parametrize("mode", [m for m in MODES if m not in TEAM_MODES + ("ok", "slow")])
def test_the_usages_modes_leave_the_team_endpoints_alone(fake: FakeUpstream, client: Scenario,
                                                         mode: str) -> None:
    fake.set_mode(mode)
    assert client.teams.list().teams[0].id == DEMO_TEAM_ID
    assert client.teams.retrieve_limits(DEMO_TEAM_ID).plan == "cu-team-v2"
    assert len(list(client.projects.list(page_size=2))) == 5


def test_the_team_modes_are_modes_of_the_fake() -> None:
    assert set(TEAM_MODES) <= set(MODES)
