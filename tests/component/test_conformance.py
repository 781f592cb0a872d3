"""Held against Scenario's official SDK (``scenario-sdk`` 2.4): what the exporter sends, and
what our demo and fake answer.

- Every body the demo account and the loopback fake produce validates under
  ``scenario_sdk.types.UsageListResponse``, but for the fake's deliberate drift,
  listed by name with the drift each tests.
- The request on the wire of the live refresh, ``check`` and the backfill equals
  what ``scenario_sdk.Scenario(...).usages.list(...)`` sends for the same
  arguments (both captured with httpx's ``MockTransport``): method, path, every
  query parameter and the credentials.
- The demo uses only the SDK's enum values and sends every field of SDK 2.4; the
  demo API refuses windows over 120 days, answers every section for an unknown
  ``type``, and reads ``dropZeroPoints`` as the SDK documents it.
"""

from __future__ import annotations

import io
import json
import typing
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from freezegun import freeze_time
from pydantic import ValidationError
from scenario_sdk import Scenario
from scenario_sdk.types import UsageListResponse
from scenario_sdk.types.usage_list_response import AssetUsage, Usage

from exporter.backfill.command import BackfillOptions
from exporter.backfill.run import run_backfill
from exporter.check.command import run_check
from exporter.config.load import build_settings
from exporter.config.settings import Settings
from exporter.live.service import build_exporter
from exporter.upstream.demo import SECTIONS, DemoAccount
from exporter.upstream.demo_api import demo_transport
from testkit.doubles import recording_transport
from testkit.fake_upstream import MODES, FakeUpstream

KEY, SECRET = "sdk-key", "sdk-secret-value"
API = "https://api.example/v1"
NOW = datetime(2026, 11, 20, 12, 30, 15, 250000, tzinfo=timezone.utc)
# What the exporter asks for: every section it exports, in the order of the SDK's enum.
EXPORTED = ["usages", "consumption", "model-usages", "asset-usages", "nsfw-usages",
            "quality-gate-usages"]
# The fake's deliberate departures from the SDK's types, and what each one tests.
DRIFT = {
    "drift": "schema drift the exporter must survive: unknown fields and sections, numbers "
             "as strings, nulls, a usage name (brand-new-usage) and an asset kind "
             "(hologram) outside the SDK's enums",
    "invalid": "a usage value that is not a number: the whole response is invalid",
    "garbage": "a body that is not JSON",
}


def validate(body: Any) -> UsageListResponse:
    return UsageListResponse.model_validate(body)


# -- the bodies ----------------------------------------------------------------------


@pytest.mark.parametrize("length", [timedelta(minutes=50), timedelta(hours=5), timedelta(days=1),
                                    timedelta(days=3), timedelta(days=31), timedelta(days=90)],
                         ids=lambda d: f"{d.total_seconds() / 3600:g}h")
@pytest.mark.parametrize("drop_zero_points", [True, False])
def test_every_demo_body_validates_under_the_sdk(length: timedelta,
                                                  drop_zero_points: bool) -> None:
    account = DemoAccount(models=5, users=3, api_keys=1)
    for sections in (None, EXPORTED, ["quality-gate-usages"], ["consumption"]):
        body = account.response(NOW - length, NOW, sections, drop_zero_points=drop_zero_points)
        validate(json.loads(json.dumps(body)))


def test_every_fake_body_validates_but_the_listed_drift() -> None:
    assert set(DRIFT) <= set(MODES)
    with FakeUpstream(DemoAccount(models=4, users=2, api_keys=1), KEY, SECRET) as fake:
        fake.state.refunds[fake.state.account.model_list[0].id] = 7.5
        with httpx.Client(base_url=fake.url, auth=(KEY, SECRET), trust_env=False) as http:
            for mode in MODES:
                if mode == "slow":
                    continue  # the body of "ok", late
                fake.set_mode(mode)
                response = http.get("/usages", params={
                    "startDate": "2026-11-01T00:00:00.000Z", "endDate": "2026-11-02T10:00:00.000Z",
                    "type": ",".join(EXPORTED), "dropZeroPoints": "true"})
                if response.status_code != 200:
                    assert mode not in DRIFT, mode
                    continue
                if mode in DRIFT:
                    with pytest.raises((ValidationError, json.JSONDecodeError)):
                        validate(json.loads(response.content))
                else:
                    validate(response.json())
            # Before the account's history starts: every section, with no rows.
            fake.set_mode("ok")
            fake.state.history_start = datetime(2026, 11, 5, tzinfo=timezone.utc)
            response = http.get("/usages", params={
                "startDate": "2026-11-01T00:00:00.000Z", "endDate": "2026-11-02T10:00:00.000Z",
                "type": ",".join(EXPORTED)})
            empty = validate(response.json())
            assert not any(getattr(empty, field) for field in type(empty).model_fields
                           if isinstance(getattr(empty, field), list)), response.text[:500]


def enum_values(model: type[Any], field: str) -> set[str]:
    return set(typing.get_args(model.model_fields[field].annotation))


def test_the_demo_uses_only_the_sdks_enum_values_and_sends_every_field() -> None:
    body = DemoAccount(models=3, users=2, api_keys=1).response(NOW - timedelta(days=3), NOW)
    assert {row["usageName"] for row in body["usages"]} == enum_values(Usage, "usage_name")
    assert {row["kind"] for row in body["assetUsages"]} == enum_values(AssetUsage, "kind")
    assert {row["verdict"] for row in body["qualityGateUsages"]} == {"total", "pass", "warn",
                                                                      "fail"}
    fields = {"time", "value", "apiKey", "cost", "discount", "apiKeyCost", "apiKeyDiscount"}
    assert all(set(point) == fields for row in body["usages"] for point in row["points"])
    assert any(point["cost"] < 0 for row in body["usages"] for point in row["points"])  # refunds
    assert all(isinstance(row["costDetails"], dict) for row in body["consumption"])
    assert set(body) == {"usages", "activity", "consumption", "modelUsages", "assetUsages",
                         "nsfwUsages", "qualityGateUsages", "entities"}


# -- the demo API -------------------------------------------------------------------------


Ask = Callable[[dict[str, str]], httpx.Response]


@pytest.fixture(params=["demo transport", "fake upstream"])
def ask(request: pytest.FixtureRequest) -> Iterator[Ask]:
    """GET /v1/usages with these query parameters, of the built-in demo API or of the
    tests' loopback fake (both read the query with exporter.upstream.demo_api)."""
    account = DemoAccount(models=2, users=1, api_keys=1)
    if request.param == "demo transport":
        with httpx.Client(transport=demo_transport(account, KEY, SECRET),
                          base_url="https://demo/v1") as http:
            yield lambda params: http.get("/usages", params=params, auth=(KEY, SECRET))
        return
    with FakeUpstream(account, KEY, SECRET) as fake, \
            httpx.Client(base_url=fake.url, trust_env=False) as http:
        yield lambda params: http.get("/usages", params=params, auth=(KEY, SECRET))


WINDOW = {"startDate": "2026-11-01T00:00:00.000Z", "endDate": "2026-11-03T00:00:00.000Z"}


def test_windows_over_120_days_are_refused(ask: Ask) -> None:
    # 120 days before 2026-11-03 is 2026-07-06
    assert ask({**WINDOW, "startDate": "2026-07-06T00:00:00.000Z"}).status_code == 200
    refused = ask({**WINDOW, "startDate": "2026-07-05T23:59:59.000Z"})
    assert refused.status_code == 400 and "120 days" in refused.json()["message"]


@pytest.mark.parametrize("asked", ["", "bogus", "usages,bogus", ","])
def test_an_unknown_or_empty_type_answers_every_section(ask: Ask, asked: str) -> None:
    body = ask({**WINDOW, "type": asked}).json()
    assert {"usages", "activity", "consumption", "modelUsages", "assetUsages", "nsfwUsages",
            "qualityGateUsages"} <= set(body)
    assert len(SECTIONS) == 7


@pytest.mark.parametrize(("value", "dropped"), [
    (None, False), ("", True), ("true", True), ("1", True), ("yes", True), ("on", True),
    ("anything", True), ("false", False), ("0", False), ("no", False), ("OFF", False)])
def test_drop_zero_points_as_the_sdk_documents_it(ask: Ask, value: str | None,
                                                  dropped: bool) -> None:
    # An hour at night, in minutes: most of them without a job.
    params = {"startDate": "2026-11-01T00:00:00.000Z", "endDate": "2026-11-01T01:00:00.000Z",
              "type": "model-usages"}
    if value is not None:
        params["dropZeroPoints"] = value
    rows = ask(params).json()["modelUsages"]
    points = [p for row in rows for p in row["points"]]
    zero = [p for p in points if not any(p[k] for k in p if k != "time")]
    assert bool(zero) is not dropped
    assert len(rows) == 2  # every row stays, with points: [] when all of them dropped


# -- the requests --------------------------------------------------------------------------


def sdk_request(*, start: str, end: str, account_options: dict[str, str]) -> httpx.Request:
    """What the official SDK sends for the exporter's arguments (the SDK call goes through the
    demo API, so its answer must validate under the SDK's types too)."""
    seen: list[httpx.Request] = []
    transport = demo_transport(DemoAccount(models=2, users=1, api_keys=1), KEY, SECRET)
    client = Scenario(api_key=KEY, api_secret=SECRET, base_url=API, max_retries=0,
                      http_client=httpx.Client(transport=recording_transport(
                          transport.handle_request, seen)))
    client.usages.list(start_date=start, end_date=end, type=EXPORTED,  # type: ignore[arg-type]
                       drop_zero_points=True, **account_options)  # type: ignore[arg-type]
    (request,) = seen
    return request


def on_the_wire(request: httpx.Request) -> tuple[str, str, list[tuple[str, str]], str | None]:
    """Method, path, every query parameter (sorted: their order means nothing), credentials."""
    return (request.method, request.url.path, sorted(parse_qsl(request.url.query.decode())),
            request.headers.get("Authorization"))


ACCOUNT_OPTIONS = [
    pytest.param({}, {}, id="defaults"),
    pytest.param({"scenario.project-ids": "proj_a,proj_b", "scenario.team-id": "team_7",
                  "scenario.user-ids": "user_1,user_2"},
                 {"project_ids": "proj_a,proj_b", "team_id": "team_7",
                  "user_ids": "user_1,user_2"}, id="every-option"),
]


def settings_for(flags: dict[str, str]) -> Settings:
    # The calendar month, so that each window below is known in advance; the billing
    # period (--period=auto, the default) has its own tests in test_billing_period.py.
    return build_settings({"scenario.api-url": API, "period": "month", **flags},
                          {"SCENARIO_API_KEY": KEY, "SCENARIO_API_SECRET": SECRET})


def exporter_requests() -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []
    demo = demo_transport(DemoAccount(models=2, users=1, api_keys=1), KEY, SECRET)
    return seen, recording_transport(demo.handle_request, seen)


@pytest.mark.parametrize(("flags", "options"), ACCOUNT_OPTIONS)
def test_the_live_refresh_sends_what_the_sdk_sends(flags: dict[str, str],
                                                    options: dict[str, str]) -> None:
    seen, transport = exporter_requests()
    exporter = build_exporter(settings_for(flags), transport=transport,
                              wall=NOW.timestamp, spawn=lambda work: work())
    exporter.start()
    (request,) = [r for r in seen if r.url.path.endswith("/usages")]
    assert exporter.views()[0].up
    expected = sdk_request(start="2026-11-01T00:00:00.000Z", end="2026-11-20T12:30:15.250Z",
                           account_options=options)
    assert on_the_wire(request) == on_the_wire(expected)


@pytest.mark.parametrize(("flags", "options"), ACCOUNT_OPTIONS)
def test_check_sends_what_the_sdk_sends(flags: dict[str, str], options: dict[str, str]) -> None:
    seen, transport = exporter_requests()
    with freeze_time(NOW):
        assert run_check(settings_for(flags), transport, io.StringIO()) is True
    (request,) = [r for r in seen if r.url.path.endswith("/usages")]
    expected = sdk_request(start="2026-11-01T00:00:00.000Z", end="2026-11-20T12:30:15.250Z",
                           account_options=options)
    assert on_the_wire(request) == on_the_wire(expected)


@pytest.mark.parametrize(("flags", "options"), ACCOUNT_OPTIONS)
def test_the_backfill_sends_what_the_sdk_sends(flags: dict[str, str], options: dict[str, str],
                                               tmp_path: Any) -> None:
    seen, transport = exporter_requests()
    backfill = BackfillOptions(date(2026, 9, 1), date(2026, 11, 1), str(tmp_path / "out.om"))
    assert run_backfill(settings_for(flags), backfill, transport, wall=NOW.timestamp,
                        stderr=io.StringIO()) is True
    assert [on_the_wire(r) for r in seen] == [on_the_wire(sdk_request(
        start=start, end=end, account_options=options)) for start, end in (
        ("2026-09-01T00:00:00.000Z", "2026-10-01T00:00:00.000Z"),
        ("2026-10-01T00:00:00.000Z", "2026-11-01T00:00:00.000Z"))]


def test_the_bare_drop_zero_points_form_drops_them_at_the_fake() -> None:
    """``?dropZeroPoints`` without a value, which a query parser may drop as blank."""
    with FakeUpstream(DemoAccount(models=2, users=1, api_keys=1), KEY, SECRET) as fake, \
            httpx.Client(trust_env=False) as http:
        query = ("startDate=2026-11-01T00:00:00.000Z&endDate=2026-11-01T01:00:00.000Z"
                 "&type=model-usages")
        bare = http.get(f"{fake.url}/usages?{query}&dropZeroPoints", auth=(KEY, SECRET))
        absent = http.get(f"{fake.url}/usages?{query}", auth=(KEY, SECRET))
    count = [sum(len(row["points"]) for row in r.json()["modelUsages"]) for r in (bare, absent)]
    assert count[0] < count[1]
