"""The team endpoints read (exporter.upstream.team) and served (exporter.metrics.team):
the demo's bodies, which validate under the SDK's types, and the odd ones upstream may
send. Each expected figure is computed here from the raw body, not from the reader."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from exporter.core.account import AccountConfig
from exporter.core.errors import InvalidResponse
from exporter.core.period import parse_iso
from exporter.core.team import PlanLimits, PrepaidPack, TeamView, prepaid_at
from exporter.core.values import AccountView
from exporter.metrics.team import endpoint_up_family, team_families
from exporter.upstream.client import UsageClient
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import demo_transport
from exporter.upstream.demo_team import DEMO_TEAM_ID, limits_body, projects_page, team_body
from exporter.upstream.team import OTHER_ID, TeamReader, read_limits, read_team

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=timezone.utc)
DEMO = DemoAccount(models=4, users=3, api_keys=2)
ACCOUNT = AccountConfig(name="studio", api_key="k", api_secret="s")


def encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def moment(text: str) -> float:
    return parse_iso(text).timestamp()


def test_the_demo_limits_read_as_upstream_wrote_them() -> None:
    body = limits_body(DEMO, NOW)
    limits = read_limits(encoded(body))
    assert limits.period_start == moment(body["period"]["start"])
    assert limits.period_end == moment(body["period"]["end"])
    assert limits.allowance == body["limits"]["creativeUnits"]
    assert limits.used == body["values"]["creativeUnits"]
    assert limits.plan == body["plan"]
    now = NOW.timestamp()
    usable = [p for p in body["oneShotCreativeUnits"]
              if p["remaining"] > 0 and moment(p["expiration"]) > now]
    first = min(moment(p["expiration"]) for p in usable)
    left = prepaid_at(limits.packs, now)
    assert left.remaining == sum(p["remaining"] for p in usable)
    assert left.next_expiry == first
    assert left.expiring_next == sum(p["remaining"] for p in usable
                                     if moment(p["expiration"]) == first)
    # The demo has an expired pack with units left: it must not count.
    assert left.remaining < sum(p["remaining"] for p in body["oneShotCreativeUnits"])


def test_prepaid_units_expire_as_time_passes() -> None:
    packs = (PrepaidPack(100, 1000.0), PrepaidPack(50, 2000.0), PrepaidPack(7, None),
             PrepaidPack(0, 500.0))
    assert prepaid_at(packs, 0.0) == prepaid_at(packs, 999.0)
    assert prepaid_at(packs, 0.0).remaining == 157
    assert (prepaid_at(packs, 0.0).next_expiry, prepaid_at(packs, 0.0).expiring_next) == \
        (1000.0, 100)
    later = prepaid_at(packs, 1000.0)  # the first pack expires at 1000: gone
    assert (later.remaining, later.next_expiry, later.expiring_next) == (57, 2000.0, 50)
    never = prepaid_at(packs, 5000.0)  # a pack without an expiry never expires
    assert (never.remaining, never.next_expiry, never.expiring_next) == (7, None, None)


def test_odd_figures_are_left_out_and_the_rest_is_read() -> None:
    body = limits_body(DEMO, NOW)
    body["limits"]["creativeUnits"] = -5
    body["values"]["creativeUnits"] = "twelve"
    body["oneShotCreativeUnits"] = [
        {"amount": 10, "remaining": "40", "expiration": "not a date"},  # no expiry: kept
        {"amount": 10, "remaining": None, "expiration": "2026-11-25T00:00:00Z"},  # dropped
        "not an object",
        {"amount": 10, "remaining": 5, "expiration": "2026-11-25T00:00:00Z"},
    ]
    limits = read_limits(encoded(body))
    assert (limits.allowance, limits.used) == (None, None)
    assert limits.packs == (PrepaidPack(40.0, None),
                            PrepaidPack(5.0, moment("2026-11-25T00:00:00Z")))
    assert limits.period_start == moment(body["period"]["start"])


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"period": 3}', b"[]",
                                  b'{"period": {"start": "2026-11-17T09:00:00Z", '
                                  b'"end": "2026-10-17T09:00:00Z"}}'],
                         ids=["not-json", "no-period", "period-not-an-object", "a-list",
                              "end-before-start"])
def test_a_body_that_is_not_the_schema_is_invalid(body: bytes) -> None:
    with pytest.raises((ValidationError, InvalidResponse)):
        read_limits(body)


def test_keys_and_members_past_the_cap_are_summed_under_other() -> None:
    body = team_body(DEMO, NOW)
    keys = body["team"]["keys"]
    assert len(keys) >= 3
    details = read_team(encoded(body), max_ids=2)
    assert len(details.keys) == 2 and OTHER_ID in details.keys
    ranked = sorted(keys, key=lambda k: (-(k.get("consumption") or 0), k["apiKeyId"]))
    (kept,) = (k for k in details.keys if k != OTHER_ID)
    assert kept == ranked[0]["apiKeyId"]
    assert details.keys[OTHER_ID].consumption == sum(k.get("consumption") or 0
                                                     for k in ranked[1:])
    whole = read_team(encoded(body), max_ids=1000)
    for key in keys:
        read = whole.keys[key["apiKeyId"]]
        assert (read.member_id, read.name, read.status, read.consumption,
                read.max_consumption) == (key["id"], key["name"], key["apiKeyStatus"],
                                          key.get("consumption"), key.get("maxConsumption"))
        assert read.last_used == (moment(key["lastUsedAt"]) if "lastUsedAt" in key else None)
    assert {u["id"] for u in body["team"]["users"]} == set(whole.members)
    assert whole.payment_status == body["team"]["paymentStatus"]
    assert whole.subscription_status == body["team"]["subscriptionStatus"]


def test_projects_follow_every_page_and_keep_only_the_team() -> None:
    pages: list[httpx.Request] = []
    demo = demo_transport(DEMO, "k", "s", now=lambda: NOW)

    def handle(request: httpx.Request) -> httpx.Response:
        pages.append(request)
        return demo.handle_request(request)

    client = UsageClient("https://api.example/v1", 5, transport=httpx.MockTransport(handle))
    projects, calls = TeamReader(client, ACCOUNT, 1000).projects(DEMO_TEAM_ID)
    everything, token = [], None
    while True:
        page = projects_page(DEMO, NOW, 100, token)
        everything += page["projects"]
        token = page.get("nextPaginationToken")
        if not token:
            break
    assert calls == len(pages) > 1  # the pages are shorter than asked
    assert set(projects) == {p["id"] for p in everything}
    for project in everything:
        assert projects[project["id"]].consumption == project.get("consumption")
        assert projects[project["id"]].max_consumption == project.get("maxConsumption")
    # Another team's projects, which the key may also see, are not this team's.
    assert TeamReader(client, ACCOUNT, 1000).projects("team_other")[0] == {}


def served(teams: list[TeamView], now: float, max_stale: float = 7200) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for family in team_families(teams, now, max_stale):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_the_families_serve_what_the_endpoints_said() -> None:
    now = NOW.timestamp()
    limits = read_limits(encoded(limits_body(DEMO, NOW)))
    details = read_team(encoded(team_body(DEMO, NOW)), 1000)
    view = TeamView("studio", 3, DEMO_TEAM_ID, (), {"team": True}, limits, now, details, now,
                    None, None)
    got = served([view], now)
    assert got["scenario_plan_creative_units"] == [({"account": "studio"}, limits.allowance)]
    assert got["scenario_plan_used_creative_units"] == [({"account": "studio"}, limits.used)]
    assert got["scenario_billing_period_start_timestamp_seconds"][0][1] == limits.period_start
    assert got["scenario_prepaid_creative_units"][0][1] == prepaid_at(limits.packs, now).remaining
    (info,) = got["scenario_team_info"]
    assert info[0] == {"account": "studio", "team_id": DEMO_TEAM_ID,
                       "team_name": details.name, "plan": details.plan,
                       "payment_status": "succeeded", "subscription_status": "active"}
    caps = dict((labels["api_key_id"], value) for labels, value
                in got["scenario_api_key_max_consumption_creative_units"])
    assert caps == {key_id: key.max_consumption for key_id, key in details.keys.items()
                    if key.max_consumption is not None}
    never_used = [k for k, key in details.keys.items() if key.last_used is None]
    assert never_used and not {labels["api_key_id"] for labels, _ in
                               got["scenario_api_key_last_used_timestamp_seconds"]} & \
        set(never_used)
    assert "scenario_project_consumption_creative_units" not in got  # never read


def test_figures_older_than_the_bound_are_withdrawn() -> None:
    limits = PlanLimits(1000.0, 2000.0, "pro", 50.0, 10.0)
    view = TeamView("studio", 1, "t", (), {"team_limits": False}, limits, 0.0)
    assert served([view], 7200.0)["scenario_plan_creative_units"]
    assert "scenario_plan_creative_units" not in served([view], 7201.0)


def test_endpoint_up_says_which_endpoint_answers() -> None:
    views = [AccountView(ACCOUNT, up=True, attempted=True),
             AccountView(AccountConfig(name="new", api_key="k", api_secret="s"))]
    teams = [TeamView("studio", endpoints={"team_limits": False, "team": True})]
    family = endpoint_up_family(views, teams)
    got = {(s.labels["account"], s.labels["endpoint"]): s.value for s in family.samples}
    assert got == {("studio", "usages"): 1.0, ("studio", "team_limits"): 0.0,
                    ("studio", "team"): 1.0}
