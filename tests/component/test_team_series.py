"""The team series end to end: the exporter's data side reading the loopback fake over
HTTP, its /metrics held against the fake's own answers (asked over HTTP here too), and
each fault of the team endpoints leaving usages and the other endpoints alone."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from exporter.core.period import parse_iso
from exporter.live.app import landing_page
from exporter.live.exporter import UsageExporter
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_team import DEMO_TEAM_ID
from testkit.clock import FakeClock
from testkit.data_side import over_fake, scrape
from testkit.fake_upstream import SECOND_TEAM_ID, FakeUpstream
from testkit.web import basic_authorization

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=timezone.utc).timestamp()
KEY, SECRET = "team-key", "team-secret"
ENDPOINTS = ("team_limits", "team", "projects")


@contextmanager
def running(mode: str = "ok", **flags: str) -> Iterator[tuple[FakeUpstream, UsageExporter,
                                                              FakeClock]]:
    with over_fake(DemoAccount(models=4, users=3, api_keys=2), KEY, SECRET, NOW, mode,
                   flags) as running:
        yield running


def upstream(fake: FakeUpstream, path: str, **params: str) -> Any:
    """What the fake answers, asked as a client would."""
    response = httpx.get(fake.url + path, params=params,
                         headers={"Authorization": basic_authorization(KEY, SECRET)})
    response.raise_for_status()
    return response.json()


def every_project(fake: FakeUpstream) -> list[dict[str, Any]]:
    found, token = [], None
    while True:
        page = upstream(fake, "/projects", **({"paginationToken": token} if token else {}))
        found += page["projects"]
        token = page.get("nextPaginationToken")
        if not token:
            return found


def seconds(text: str) -> float:
    return parse_iso(text).timestamp()


def test_every_team_series_equals_the_fakes_answer() -> None:
    with running() as (fake, exporter, _):
        got = scrape(exporter)
        limits = upstream(fake, f"/teams/{DEMO_TEAM_ID}/limits")
        team = upstream(fake, f"/teams/{DEMO_TEAM_ID}")["team"]
        projects = every_project(fake)
    account = {"account": "default"}
    assert got.value("scenario_billing_period_start_timestamp_seconds", **account) == \
        seconds(limits["period"]["start"])
    assert got.value("scenario_billing_period_end_timestamp_seconds", **account) == \
        seconds(limits["period"]["end"])
    assert got.value("scenario_plan_creative_units", **account) == \
        limits["limits"]["creativeUnits"]
    assert got.value("scenario_plan_used_creative_units", **account) == \
        limits["values"]["creativeUnits"]
    usable = [p for p in limits["oneShotCreativeUnits"]
              if p["remaining"] > 0 and seconds(p["expiration"]) > NOW]
    first = min(seconds(p["expiration"]) for p in usable)
    assert got.value("scenario_prepaid_creative_units", **account) == \
        sum(p["remaining"] for p in usable)
    assert got.value("scenario_prepaid_next_expiry_timestamp_seconds", **account) == first
    assert got.value("scenario_prepaid_expiring_next_creative_units", **account) == \
        sum(p["remaining"] for p in usable if seconds(p["expiration"]) == first)
    assert got.value("scenario_team_info", account="default", team_id=team["id"],
                     team_name=team["name"], plan=team["plan"],
                     payment_status=team["paymentStatus"],
                     subscription_status=team["subscriptionStatus"]) == 1
    for name, rows, label, key in (
            ("api_key", team["keys"], "api_key_id", "apiKeyId"),
            ("member", team["users"], "user_id", "id"),
            ("project", projects, "project_id", "id")):
        used = got.by_label(f"scenario_{name}_consumption_creative_units", label)
        assert used == {r[key]: r["consumption"] for r in rows if "consumption" in r}
        caps = got.by_label(f"scenario_{name}_max_consumption_creative_units", label)
        assert caps == {r[key]: r["maxConsumption"] for r in rows if "maxConsumption" in r}
        assert caps, f"the fake caps some {name}s"
    assert got.by_label("scenario_api_key_last_used_timestamp_seconds", "api_key_id") == \
        {k["apiKeyId"]: seconds(k["lastUsedAt"]) for k in team["keys"] if "lastUsedAt" in k}
    assert got.by_labels("scenario_api_key_info", ("api_key_id", "member_id", "api_key_name",
                                                   "status", "scope")) == \
        {(k["apiKeyId"], k["id"], k["name"], k["apiKeyStatus"], k["scope"]): 1.0
         for k in team["keys"]}
    assert got.by_labels("scenario_project_info", ("project_id", "project_name")) == \
        {(p["id"], p["name"]): 1.0 for p in projects}
    assert got.by_label("scenario_exporter_endpoint_up", "endpoint") == \
        {"usages": 1.0, "team_limits": 1.0, "team": 1.0, "projects": 1.0}


@pytest.mark.parametrize(("mode", "flags", "down", "up"), [
    ("team-403", {}, {"team"}, set()),
    ("team-403", {"scenario.team-id": DEMO_TEAM_ID}, set(ENDPOINTS), set()),
    ("team-404", {}, {"team_limits", "team"}, {"projects"}),
    ("team-garbage", {"scenario.team-id": DEMO_TEAM_ID}, set(ENDPOINTS), set()),
    ("projects-page-500", {}, {"projects"}, {"team_limits", "team"}),
], ids=["forbidden", "forbidden-configured", "no-such-team", "garbage", "page-fails"])
def test_a_failing_team_endpoint_is_down_alone(mode: str, flags: dict[str, str],
                                               down: set[str], up: set[str]) -> None:
    with running(mode, **flags) as (fake, exporter, _):
        got = scrape(exporter)
        assert fake.calls("usages") == 1
    endpoints = got.by_label("scenario_exporter_endpoint_up", "endpoint")
    assert endpoints == {"usages": 1.0, **{e: 0.0 for e in down}, **{e: 1.0 for e in up}}
    assert got.value("scenario_up", account="default") == 1.0
    assert got.by_label("scenario_model_cost_creative_units_total", "model_id")
    assert bool(got.value("scenario_plan_creative_units", account="default")) == \
        ("team_limits" in up)
    assert bool(got.by_label("scenario_project_consumption_creative_units", "project_id")) == \
        ("projects" in up)


def test_the_last_good_figures_are_kept_while_an_endpoint_fails() -> None:
    with running() as (fake, exporter, clock):
        before = scrape(exporter)
        fake.set_mode("team-403")
        clock.advance(900)
        after = scrape(exporter)
        assert fake.calls("team_limits") == 2
    assert after.by_label("scenario_exporter_endpoint_up", "endpoint") == \
        {"usages": 1.0, "team_limits": 0.0, "team": 0.0, "projects": 0.0}
    for name in ("scenario_plan_creative_units", "scenario_prepaid_creative_units"):
        assert after.value(name, account="default") == before.value(name, account="default")


def test_several_teams_are_listed_on_the_landing_page() -> None:
    with running("two-teams") as (fake, exporter, clock):
        got = scrape(exporter)
        page = landing_page(exporter, clock.wall()).decode()
        assert fake.calls("team_limits") == fake.calls("team") == fake.calls("projects") == 0
    assert DEMO_TEAM_ID in page and SECOND_TEAM_ID in page and "set team_id" in page
    assert got.value("scenario_plan_creative_units", account="default") is None
    assert got.by_label("scenario_exporter_endpoint_up", "endpoint") == \
        {"usages": 1.0, "team": 1.0}


def test_the_team_endpoints_are_read_once_per_interval() -> None:
    with running(**{"team.refresh-interval": "10m"}) as (fake, exporter, clock):
        for _ in range(60):  # an hour of scrapes every minute
            scrape(exporter)
            clock.advance(60)
        pages = fake.calls("projects") // fake.calls("team_limits")
        assert (fake.calls("teams"), fake.calls("team_limits"), fake.calls("team")) == (1, 6, 6)
        assert pages == 3 and fake.calls("projects") == 18
        # Usages keep their own 5-minute TTL (the first interval is jittered to 50-100%).
        assert 12 <= fake.calls("usages") <= 13


def bill_row(page: str, account: str = "default") -> list[str]:
    """The cells of *account*'s row of the landing page's bill, after its name."""
    match = re.search(rf'<tr><th scope="row">{re.escape(account)}</th>(.*?)</tr>', page)
    assert match, f"no bill row for {account}:\n{page}"
    return [html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", match.group(1))]


def cu(value: float) -> str:
    return f"{value:,.1f}".removesuffix(".0")


def test_the_landing_page_shows_the_bill_the_fake_answered() -> None:
    with running() as (fake, exporter, clock):
        scrape(exporter)
        limits = upstream(fake, f"/teams/{DEMO_TEAM_ID}/limits")  # as the exporter read it
        clock.advance(120)  # the page is looked at two minutes after the limits were read
        page = landing_page(exporter, clock.wall()).decode()
    start, end = seconds(limits["period"]["start"]), seconds(limits["period"]["end"])
    allowance, used = limits["limits"]["creativeUnits"], limits["values"]["creativeUnits"]
    projected = used + used / (NOW - start) * (end - NOW)  # read at NOW
    assert projected < allowance, "the demo's pace stays within its allowance"
    assert "at the pace so far" in page and "time elapsed since the period started" in page
    assert bill_row(page) == [
        f"2026-11-17 09:00 – 2026-12-17 09:00 ({(end - NOW - 120) / 86400:.1f} days left)",
        f"{cu(used)} of {cu(allowance)} CU ({used / allowance:.1%})",
        f"{projected:,.0f} CU ({projected / allowance:.0%} of the allowance)",
        "22,000 CU",  # 4,000 + 18,000: the expired pack and the empty one do not count
        "2026-11-25 09:00 UTC: 4,000 CU (in 4.9 days)",
        "2026-11-20 12:30:00 UTC (120s ago)",
    ]


@pytest.mark.parametrize(("mode", "flags", "reason"), [
    ("team-403", {}, "GET /teams fails (a 403 means the key lacks the team scope"),
    ("team-403", {"scenario.team-id": DEMO_TEAM_ID},
     f"GET /teams/{DEMO_TEAM_ID}/limits fails (a 403 means the key lacks the team scope"),
    ("team-404", {}, f"GET /teams/{DEMO_TEAM_ID}/limits fails"),
    ("two-teams", {}, "the key sees several teams: set team_id"),
], ids=["forbidden", "forbidden-configured", "no-such-team", "several-teams"])
def test_an_account_without_a_bill_says_why_in_one_cell(mode: str, flags: dict[str, str],
                                                        reason: str) -> None:
    with running(mode, **flags) as (_, exporter, clock):
        scrape(exporter)
        (cell,) = bill_row(landing_page(exporter, clock.wall()).decode())
    assert cell.startswith(reason)


def test_the_bill_before_the_first_read_and_after_a_failure() -> None:
    with running() as (fake, exporter, clock):
        assert bill_row(landing_page(exporter, clock.wall()).decode()) == ["not read yet"]
        scrape(exporter)
        before = bill_row(landing_page(exporter, clock.wall()).decode())
        fake.set_mode("team-403")
        clock.advance(900)
        scrape(exporter)
        after = bill_row(landing_page(exporter, clock.wall()).decode())
    assert after[1:4] == before[1:4]  # the last good figures, said to be so
    assert after[4] == "2026-11-25 09:00 UTC: 4,000 CU (in 4.8 days)"  # 15 minutes later
    assert after[5] == "2026-11-20 12:30:00 UTC (900s ago); the last call failed, these are " \
        "the last good figures"
