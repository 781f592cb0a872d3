"""The team endpoints' requests on the wire equal what the official SDK sends
(``scenario-sdk`` 2.4: ``teams.list``, ``teams.retrieve_limits``, ``teams.retrieve``,
``projects.list``), for the live refresh and ``check``; both captured with httpx's
MockTransport over the demo API, whose answers the SDK itself must accept."""

from __future__ import annotations

import io

import httpx
from scenario_sdk import Scenario

from exporter.check.command import run_check
from exporter.config.load import build_settings
from exporter.live.service import build_exporter
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import demo_transport
from exporter.upstream.demo_team import DEMO_TEAM_ID
from exporter.upstream.team import PAGE_SIZE
from testkit.doubles import recording_transport

KEY, SECRET = "sdk-key", "sdk-secret-value"
API = "https://api.example/v1"


def wire(requests: list[httpx.Request]) -> list[tuple[str, str, str, str | None]]:
    """Method, path, query, credentials of each request that is not a usages call."""
    return [(r.method, r.url.path, r.url.query.decode(), r.headers.get("Authorization"))
            for r in requests if not r.url.path.endswith("/usages")]


def sdk_requests() -> list[httpx.Request]:
    seen: list[httpx.Request] = []
    demo = demo_transport(DemoAccount(models=2, users=2, api_keys=1), KEY, SECRET)
    client = Scenario(api_key=KEY, api_secret=SECRET, base_url=API, max_retries=0,
                      http_client=httpx.Client(transport=recording_transport(
                          demo.handle_request, seen)))
    (team,) = client.teams.list().teams
    client.teams.retrieve_limits(team.id)
    client.teams.retrieve(team.id)
    assert len(list(client.projects.list(page_size=PAGE_SIZE))) == 5
    return seen


def exporter_transport() -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []
    demo = demo_transport(DemoAccount(models=2, users=2, api_keys=1), KEY, SECRET)
    return seen, recording_transport(demo.handle_request, seen)


def settings() -> object:
    return build_settings({"scenario.api-url": API},
                          {"SCENARIO_API_KEY": KEY, "SCENARIO_API_SECRET": SECRET})


def test_the_live_team_refresh_sends_what_the_sdk_sends() -> None:
    seen, transport = exporter_transport()
    exporter = build_exporter(settings(), transport=transport,  # type: ignore[arg-type]
                              spawn=lambda work: work())
    exporter.start()
    exporter.close()
    expected = wire(sdk_requests())
    assert [path for _, path, _, _ in expected] == [
        "/v1/teams", f"/v1/teams/{DEMO_TEAM_ID}/limits", f"/v1/teams/{DEMO_TEAM_ID}",
        "/v1/projects", "/v1/projects", "/v1/projects"]
    assert wire(seen) == expected
    assert exporter.teams[0].view.projects is not None


def test_check_sends_what_the_sdk_sends_to_the_team_endpoints() -> None:
    seen, transport = exporter_transport()
    out = io.StringIO()
    assert run_check(settings(), transport, out) is True  # type: ignore[arg-type]
    assert wire(seen) == wire(sdk_requests())
    assert "GET /projects: readable" in out.getvalue()
