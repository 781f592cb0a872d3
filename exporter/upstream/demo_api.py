"""How the demo API answers ``GET /v1/usages``: routing, auth and the query, as upstream does.

The built-in demo transport (``--demo``) and the tests' loopback fake both read
requests through these functions, so they refuse and interpret what Scenario's
API does, as its SDK (``scenario-sdk`` 2.4, ``usages.list``) documents it: a
custom window of at most 120 days, every section for an unknown or empty
``type``, and ``dropZeroPoints`` on for its bare form and any value but the
falsy literals.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from exporter.core.period import parse_iso
from exporter.upstream.demo import SECTIONS, DemoAccount

# The longest window of one request with startDate and endDate (the SDK's docs).
MAX_WINDOW = timedelta(days=120)
_FALSY = frozenset({"false", "0", "no", "off"})


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


def check_request(path: str, authorization: str | None, api_key: str, api_secret: str) -> None:
    """Refuse what upstream refuses before reading the query: another path (404), other
    credentials than these Basic ones (401)."""
    if not path.rstrip("/").endswith("/usages"):
        raise Refused(404, "not found")
    expected = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()
    if authorization != f"Basic {expected}":
        raise Refused(401, "Unauthorized")


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


def demo_transport(account: DemoAccount, api_key: str, api_secret: str) -> httpx.MockTransport:
    """An httpx transport that answers ``GET /v1/usages`` from *account*."""

    def handle(request: httpx.Request) -> httpx.Response:
        try:
            check_request(request.url.path, request.headers.get("Authorization"), api_key,
                          api_secret)
            query = read_query(request.url.params)
        except Refused as refused:
            return httpx.Response(refused.status, content=refused.body,
                                  headers={"Content-Type": "application/json"})
        body = account.response(query.start, query.end, query.sections,
                                drop_zero_points=query.drop_zero_points)
        return httpx.Response(200, content=json.dumps(body, separators=(",", ":")).encode(),
                              headers={"Content-Type": "application/json"})

    return httpx.MockTransport(handle)
