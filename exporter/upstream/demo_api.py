"""How the demo API answers: routing, auth and the query, as upstream does.

The built-in demo transport (``--demo``) and the tests' loopback fake both read
requests through these functions, so they refuse and interpret what Scenario's
API does, as its SDK (``scenario-sdk`` 2.4, ``usages.list``) documents it: a
custom window of at most 120 days, every section for an unknown or empty
``type``, and ``dropZeroPoints`` on for its bare form and any value but the
falsy literals.

Beside ``/usages`` it serves the team endpoints (SDK 2.4: ``teams.list``,
``teams.retrieve_limits``, ``teams.retrieve``, ``projects.list``) from
:mod:`exporter.upstream.demo_team`, with the same Basic auth: ``/teams``,
``/teams/{id}/limits``, ``/teams/{id}`` (404 ``{"message": ...}`` for any team but
``team_demo``) and ``/projects?pageSize=N&paginationToken=T`` (pages of at most 2
projects; 400 for a page size below 1 or a token it never gave). Any other path: 404.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from exporter.core.period import parse_iso, wall_clock
from exporter.upstream.demo import SECTIONS, DemoAccount
from exporter.upstream.demo_team import (
    DEMO_TEAM_ID,
    limits_body,
    projects_page,
    team_body,
    teams_body,
)

# The longest window of one request with startDate and endDate (the SDK's docs).
MAX_WINDOW = timedelta(days=120)
_FALSY = frozenset({"false", "0", "no", "off"})
# The endpoints, by what a path ends with (the base URL ends with /v1).
USAGES, TEAMS, TEAM, TEAM_LIMITS, PROJECTS = "usages", "teams", "team", "team_limits", "projects"
_ROUTES = ((USAGES, re.compile(r"/usages/?$")), (TEAMS, re.compile(r"/teams/?$")),
           (TEAM_LIMITS, re.compile(r"/teams/([^/]+)/limits/?$")),
           (TEAM, re.compile(r"/teams/([^/]+)/?$")), (PROJECTS, re.compile(r"/projects/?$")))


class Refused(Exception):
    """A request the demo API refuses, with the status and message upstream would send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = json.dumps({"message": message}).encode()


@dataclass(frozen=True)
class UsageQuery:
    """What a query string of ``GET /v1/usages`` asks for."""

    start: datetime
    end: datetime
    sections: tuple[str, ...]
    drop_zero_points: bool


@dataclass(frozen=True)
class Route:
    """Which endpoint a path is, and the team id it names (``/teams/{id}...`` only)."""

    endpoint: str
    team_id: str | None = None


def route(path: str) -> Route:
    """The endpoint of *path*; 404 for a path the demo API does not serve."""
    for endpoint, pattern in _ROUTES:
        found = pattern.search(path)
        if found:
            return Route(endpoint, found.group(1) if found.groups() else None)
    raise Refused(404, "not found")


def check_request(path: str, authorization: str | None, api_key: str,
                  api_secret: str) -> Route:
    """Refuse what upstream refuses before reading the query: a path it does not serve
    (404), other credentials than these Basic ones (401). The endpoint otherwise."""
    where = route(path)
    expected = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()
    if authorization != f"Basic {expected}":
        raise Refused(401, "Unauthorized")
    return where


def team_answer(account: DemoAccount, where: Route, params: Mapping[str, str],
                now: datetime) -> dict[str, Any]:
    """The body of a team endpoint (any but ``usages``) at *now*; Refused for an unknown
    team (404) or a page size or token ``/projects`` cannot read (400)."""
    if where.endpoint == TEAMS:
        return teams_body(account)
    if where.endpoint == PROJECTS:
        if params.get("teamId", DEMO_TEAM_ID) not in ("", DEMO_TEAM_ID):
            raise Refused(404, "Team not found")
        try:
            size = params.get("pageSize")
            return projects_page(account, now, int(size) if size else None,
                                 params.get("paginationToken") or None)
        except ValueError as error:
            raise Refused(400, str(error)) from None
    if where.team_id != DEMO_TEAM_ID:
        raise Refused(404, f"Team {where.team_id} not found")
    return limits_body(account, now) if where.endpoint == TEAM_LIMITS else team_body(account, now)


def _wall_now() -> datetime:
    return datetime.fromtimestamp(wall_clock(), timezone.utc)


def read_query(params: Mapping[str, str]) -> UsageQuery:
    """The window, sections and zero-point choice of a query string; 400 when the dates
    are missing or further apart than upstream allows."""
    try:
        start, end = parse_iso(params["startDate"]), parse_iso(params["endDate"])
    except (KeyError, ValueError):
        raise Refused(400, "startDate and endDate are required") from None
    if end - start > MAX_WINDOW:
        raise Refused(400, "Maximum time range with custom startDate and endDate is 120 days")
    asked = [s for s in params.get("type", "").split(",") if s]
    # "If bad type or empty, all types will be returned."
    sections = tuple(asked) if asked and set(asked) <= set(SECTIONS) else SECTIONS
    drop = params.get("dropZeroPoints")
    return UsageQuery(start, end, sections, drop is not None and drop.lower() not in _FALSY)


def demo_transport(account: DemoAccount, api_key: str, api_secret: str, *,
                   now: Callable[[], datetime] = _wall_now) -> httpx.MockTransport:
    """An httpx transport that answers ``GET /v1/usages`` and the team endpoints from
    *account*; the team endpoints' figures are those at *now()* (the wall clock)."""

    def handle(request: httpx.Request) -> httpx.Response:
        try:
            where = check_request(request.url.path, request.headers.get("Authorization"),
                                  api_key, api_secret)
            if where.endpoint != USAGES:
                body = team_answer(account, where, request.url.params, now())
            else:
                query = read_query(request.url.params)
                body = account.response(query.start, query.end, query.sections,
                                        drop_zero_points=query.drop_zero_points)
        except Refused as refused:
            return httpx.Response(refused.status, content=refused.body,
                                  headers={"Content-Type": "application/json"})
        return httpx.Response(200, content=json.dumps(body, separators=(",", ":")).encode(),
                              headers={"Content-Type": "application/json"})

    return httpx.MockTransport(handle)
