"""The demo team (exporter.upstream.demo_team) against Scenario's SDK 2.4, and the demo
transport that serves it.

- Every body of the four team endpoints validates under the SDK's types, at moments
  before and after the 17th 09:00, at a month's end, in February, over a year's end.
- The billing period runs from the 17th 09:00 UTC and contains ``now``; the prepaid
  packs keep their relations to ``now`` (one expiring within 7 days, one later, one
  expired with units left, one used up).
- The figures agree with the demo's usages: CU used is the models' cost over the
  period, members' and keys' consumption their usages share, ids the usages' ids.
- Through the SDK on the demo transport (httpx's MockTransport, no server): the
  pagination of ``GET /projects`` is followed to the end, pages shorter than asked;
  an unknown team is 404, another path 404, other credentials 401.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from scenario_sdk import AuthenticationError, NotFoundError, Scenario
from scenario_sdk.types import (
    ProjectListResponse,
    TeamListResponse,
    TeamRetrieveLimitsResponse,
    TeamRetrieveResponse,
)

from exporter.core.period import parse_iso
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import demo_transport
from exporter.upstream.demo_team import (
    DEMO_TEAM_ID,
    MAX_PAGE_SIZE,
    allowance,
    billing_period,
    limits_body,
    projects_page,
    team_body,
    teams_body,
    used,
)
from testkit.doubles import recording_transport

KEY, SECRET = "team-key", "team-secret-value"
NOW = datetime(2026, 11, 20, 12, 30, 15, tzinfo=timezone.utc)
ACCOUNT = DemoAccount(models=5, users=3, api_keys=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)


MOMENTS = [
    utc(2026, 11, 17, 8, 59, 59),  # just before the period's start: the previous period
    utc(2026, 11, 17, 9, 0, 0),  # its first second
    NOW,
    utc(2026, 10, 31, 23, 59, 59),  # a month's end
    utc(2027, 2, 28, 23, 0),  # February, after the 17th
    utc(2027, 2, 3, 4, 5),  # February, before the 17th: the period started in January
    utc(2027, 1, 5, 6, 7),  # over the year's end
    utc(2025, 12, 24, 18),  # before the demo's epoch
]


def as_json(body: Any) -> Any:
    return json.loads(json.dumps(body))


def all_pages(account: DemoAccount, now: datetime, size: int | None) -> list[dict[str, Any]]:
    pages, token = [projects_page(account, now, size)], None
    while (token := pages[-1].get("nextPaginationToken")) is not None:
        pages.append(projects_page(account, now, size, token))
    return pages


# -- the bodies --------------------------------------------------------------------------


@pytest.mark.parametrize("now", MOMENTS, ids=lambda d: d.isoformat())
@pytest.mark.parametrize("account", [ACCOUNT, DemoAccount(), DemoAccount(models=2, users=1,
                                                                         api_keys=0)],
                         ids=["small", "default", "no-api-key"])
def test_every_team_body_validates_under_the_sdk(now: datetime, account: DemoAccount) -> None:
    TeamListResponse.model_validate(as_json(teams_body(account)))
    TeamRetrieveLimitsResponse.model_validate(as_json(limits_body(account, now)))
    TeamRetrieveResponse.model_validate(as_json(team_body(account, now)))
    for size in (None, 1, 2, 10):
        for page in all_pages(account, now, size):
            assert set(page) <= {"projects", "nextPaginationToken"}
            for item in as_json(page)["projects"]:
                ProjectListResponse.model_validate(item)


@pytest.mark.parametrize(("now", "start"), [
    (utc(2026, 11, 17, 8, 59, 59), utc(2026, 10, 17, 9)),
    (utc(2026, 11, 17, 9), utc(2026, 11, 17, 9)),
    (utc(2026, 10, 31, 23, 59, 59), utc(2026, 10, 17, 9)),
    (utc(2027, 2, 28, 23), utc(2027, 2, 17, 9)),
    (utc(2027, 2, 3, 4, 5), utc(2027, 1, 17, 9)),
    (utc(2027, 1, 5, 6, 7), utc(2026, 12, 17, 9)),
    (datetime(2026, 11, 18, 1, tzinfo=timezone(timedelta(hours=18))), utc(2026, 10, 17, 9)),
])
def test_the_billing_period_starts_the_17th_at_9_and_contains_now(now: datetime,
                                                                    start: datetime) -> None:
    assert billing_period(now)[0] == start
    body = limits_body(ACCOUNT, now)["period"]
    begins, ends = parse_iso(body["start"]), parse_iso(body["end"])
    assert (begins, ends) == billing_period(now)
    assert begins <= now < ends
    assert (ends.day, ends.hour, ends.minute, ends.second) == (17, 9, 0, 0)
    assert 28 <= (ends - begins).days <= 31


@pytest.mark.parametrize("now", MOMENTS, ids=lambda d: d.isoformat())
def test_the_prepaid_packs_exercise_every_rule(now: datetime) -> None:
    packs = [(p["remaining"], parse_iso(p["expiration"]) - now, p)
             for p in limits_body(ACCOUNT, now)["oneShotCreativeUnits"]]
    soon = [r for r, left, _ in packs if r > 0 and timedelta(0) < left <= timedelta(days=7)]
    later = [r for r, left, _ in packs if r > 0 and left > timedelta(days=7)]
    expired = [r for r, left, _ in packs if r > 0 and left <= timedelta(0)]
    used_up = [p for r, _, p in packs if r == 0]
    assert (soon, later, expired, len(used_up)) == ([4000], [18000], [2500], 1)
    for _, _, pack in packs:
        assert 0 <= pack["remaining"] <= pack["amount"]
        assert parse_iso(pack["createdAt"]) <= parse_iso(pack["updatedAt"]) <= now
        assert parse_iso(pack["createdAt"]) < parse_iso(pack["expiration"])


def test_the_expiring_pack_moves_once_a_day() -> None:
    """The soon-expiring pack's expiry is a fixed 09:00 for a whole day, not now + n."""
    expiry = {parse_iso(limits_body(ACCOUNT, now)["oneShotCreativeUnits"][0]["expiration"])
              for now in (utc(2026, 11, 20, 9), utc(2026, 11, 20, 15), utc(2026, 11, 21, 8, 59))}
    assert expiry == {utc(2026, 11, 25, 9)}


def test_used_is_the_models_cost_of_the_usages_over_the_period() -> None:
    start, _ = billing_period(NOW)
    usages = ACCOUNT.response(start, NOW, ["model-usages"])
    cost = sum(p["cost"] for row in usages["modelUsages"] for p in row["points"])
    values = limits_body(ACCOUNT, NOW)["values"]
    assert values["creativeUnits"] == cost == used(ACCOUNT, NOW) > 0
    assert limits_body(ACCOUNT, NOW)["limits"]["creativeUnits"] == allowance(ACCOUNT)
    # It grows through the period and starts again with the next one.
    later = used(ACCOUNT, NOW + timedelta(days=5))
    assert later > values["creativeUnits"]
    assert used(ACCOUNT, utc(2026, 12, 17, 9, 30)) < later


def test_members_and_keys_are_the_usages_users_with_their_share() -> None:
    start, _ = billing_period(NOW)
    shares = {row["userId"]: row["value"]
              for row in ACCOUNT.response(start, NOW, ["consumption"])["consumption"]}
    team = team_body(ACCOUNT, NOW)["team"]
    humans = [u for u in ACCOUNT.user_list if not u.is_api_key]
    assert [u["id"] for u in team["users"]] == [u.id for u in humans]
    assert {u["id"]: u["consumption"] for u in team["users"]} == {
        u.id: shares[u.id] for u in humans}
    (api_user,) = [u for u in ACCOUNT.user_list if u.is_api_key]
    keys = {k["id"]: k for k in team["keys"]}
    assert len(keys) == 3 and keys[api_user.id]["consumption"] == shares[api_user.id]
    assert keys[api_user.id]["apiKeyId"] == api_user.api_key_id
    assert team["users"][0]["role"] == "admin"
    assert {k["id"] for k in team["keys"]} - {api_user.id} <= {
        k["id"] for k in team["keys"] if k["id"].startswith("apiu_")}


def test_the_keys_members_and_projects_exercise_every_rule() -> None:
    team = team_body(ACCOUNT, NOW)["team"]
    default = team["defaultUserMaxConsumption"]
    capped, inactive, unused = team["keys"]
    assert capped["apiKeyStatus"] == "active" and capped["maxConsumption"] != default
    assert parse_iso(capped["lastUsedAt"]) <= NOW
    assert inactive["apiKeyStatus"] == "inactive"
    assert parse_iso(inactive["lastUsedAt"]) < billing_period(NOW)[0]
    assert "lastUsedAt" not in unused and unused["consumption"] == 0
    assert unused["scope"] == "project" and unused["ownerId"] == unused["projects"][0]["projectId"]
    # Effective caps (the SDK's word): an override, else the team-wide default.
    caps = [u["maxConsumption"] for u in team["users"]]
    assert caps[0] == allowance(ACCOUNT) and caps[1] < default and caps[2:] == [default]
    assert all(u["consumption"] < u["maxConsumption"] for u in team["users"])
    assert (team["paymentStatus"], team["subscriptionStatus"]) == ("succeeded", "active")
    assert team["invitations"] == []
    projects = [p for page in all_pages(ACCOUNT, NOW, 10) for p in page["projects"]]
    assert [p["id"] for p in projects] == [p["id"] for p in team["projects"]]
    assert {p["teamId"] for p in projects} == {DEMO_TEAM_ID}
    assert [p["name"] for p in projects if "maxConsumption" in p] == ["Console Port"]
    assert sum(p["consumption"] for p in projects) == pytest.approx(used(ACCOUNT, NOW), abs=0.05)
    (listed,) = teams_body(ACCOUNT)["teams"]
    assert listed["id"] == DEMO_TEAM_ID and listed["context"]["keysCount"] == 3
    assert listed["context"]["usersCount"] == len(team["users"])


@pytest.mark.parametrize(("size", "pages"), [(None, [2, 2, 1]), (1, [1, 1, 1, 1, 1]),
                                             (2, [2, 2, 1]), (3, [2, 2, 1]), (50, [2, 2, 1])])
def test_pages_are_never_longer_than_two(size: int | None, pages: list[int]) -> None:
    answered = all_pages(ACCOUNT, NOW, size)
    assert [len(p["projects"]) for p in answered] == pages
    assert all("nextPaginationToken" in p for p in answered[:-1])
    assert "nextPaginationToken" not in answered[-1]
    assert MAX_PAGE_SIZE == 2


@pytest.mark.parametrize(("size", "token"), [(0, None), (-1, None), (2, "bogus"),
                                             (2, "cHJvamVjdHM6OQ"), (2, "!!")])
def test_a_page_size_below_one_or_a_foreign_token_is_refused(size: int,
                                                             token: str | None) -> None:
    with pytest.raises(ValueError, match="pageSize|paginationToken"):
        projects_page(ACCOUNT, NOW, size, token)


def test_the_bodies_are_deterministic() -> None:
    again = DemoAccount(models=5, users=3, api_keys=1)
    assert team_body(again, NOW) == team_body(ACCOUNT, NOW)
    assert limits_body(again, NOW) == limits_body(ACCOUNT, NOW)
    assert all_pages(again, NOW, 10) == all_pages(ACCOUNT, NOW, 10)
    other = DemoAccount(models=5, users=3, api_keys=1, seed=7)
    assert teams_body(other)["teams"][0]["projects"] != teams_body(ACCOUNT)["teams"][0][
        "projects"]


# -- the demo transport, through the SDK --------------------------------------------------


def sdk(seen: list[httpx.Request], secret: str = SECRET,
        now: Callable[[], datetime] = lambda: NOW) -> Scenario:
    transport = demo_transport(ACCOUNT, KEY, SECRET, now=now)
    return Scenario(api_key=KEY, api_secret=secret, base_url="https://demo.example/v1",
                    max_retries=0, http_client=httpx.Client(
                        transport=recording_transport(transport.handle_request, seen)))


def test_the_sdk_reads_the_demo_team_through_the_demo_transport() -> None:
    seen: list[httpx.Request] = []
    client = sdk(seen)
    (team,) = client.teams.list().teams
    assert team.id == DEMO_TEAM_ID
    limits = client.teams.retrieve_limits(team.id)
    assert limits.values.creative_units == used(ACCOUNT, NOW)
    assert limits.period.start == "2026-11-17T09:00:00.000Z"
    details = client.teams.retrieve(team.id).team
    assert len(details.keys) == 3 and len(details.users) == 3
    projects = list(client.projects.list(page_size=10))
    assert len(projects) == 5 and all(isinstance(p, ProjectListResponse) for p in projects)
    pages = [r for r in seen if r.url.path == "/v1/projects"]
    assert len(pages) == 3 and all(r.url.params["pageSize"] == "10" for r in pages)
    assert [r.url.path for r in seen[:3]] == [
        "/v1/teams", "/v1/teams/team_demo/limits", "/v1/teams/team_demo"]


def test_the_demo_transport_answers_at_its_clock() -> None:
    moments = iter([utc(2026, 11, 17, 8, 59), utc(2026, 11, 17, 9, 1)])
    client = sdk([], now=lambda: next(moments))
    assert client.teams.retrieve_limits(DEMO_TEAM_ID).period.start == "2026-10-17T09:00:00.000Z"
    assert client.teams.retrieve_limits(DEMO_TEAM_ID).period.start == "2026-11-17T09:00:00.000Z"


def test_the_demo_transport_refuses_as_upstream_does() -> None:
    client = sdk([])
    with pytest.raises(NotFoundError):
        client.teams.retrieve("team_other")
    with pytest.raises(NotFoundError):
        client.teams.retrieve_limits("team_other")
    with pytest.raises(AuthenticationError):
        sdk([], secret="wrong").teams.list()
    transport = demo_transport(ACCOUNT, KEY, SECRET, now=lambda: NOW)
    with httpx.Client(transport=transport, base_url="https://demo.example/v1",
                      auth=(KEY, SECRET)) as http:
        for path in ("/teams/team_demo/keys", "/nope", "/teams/team_demo/limits/x"):
            missing = http.get(path)
            assert missing.status_code == 404 and "message" in missing.json(), path
        assert http.get("/teams/team_other").json() == {"message": "Team team_other not found"}
        assert http.get("/projects", params={"pageSize": "0"}).status_code == 400
        assert http.get("/projects", params={"paginationToken": "x"}).status_code == 400
        assert http.get("/projects", params={"teamId": "team_other"}).status_code == 404
        assert len(http.get("/projects", params={"teamId": DEMO_TEAM_ID}).json()[
            "projects"]) == 2
        usages = http.get("/usages", params={"startDate": "2026-11-01T00:00:00.000Z",
                                             "endDate": "2026-11-02T00:00:00.000Z"})
        assert usages.status_code == 200 and "modelUsages" in usages.json()
        assert http.get("/usages").status_code == 400
