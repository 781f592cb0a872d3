"""A real HTTP fake of Scenario's API on loopback, with fault modes.

Serves a :class:`exporter.upstream.demo.DemoAccount` (so tests know the true totals),
checks Basic auth, and misbehaves on demand the way real SaaS APIs do.
Used by the integration tests, the soak test and the benchmarks.

Endpoints (routing, auth and bodies from :mod:`exporter.upstream.demo_api`):
``GET /v1/usages``, and the team endpoints of SDK 2.4 (see
:mod:`exporter.upstream.demo_team` for the demo team's figures): ``/v1/teams``,
``/v1/teams/{id}/limits``, ``/v1/teams/{id}`` (404 for any team but ``team_demo``),
``/v1/projects`` (pages of at most 2 projects, whatever ``pageSize`` asks). Their
``now`` is :meth:`FakeState.now`: ``clock()`` (the wall clock unless a test sets its
own), sped up as usages' ``endDate`` is. Every request is recorded
(:attr:`FakeState.requests`); :meth:`FakeUpstream.calls` counts them per endpoint.

The modes of usages (``500`` ... ``empty``) affect ``/usages`` only: the team endpoints
keep answering. The team modes affect the team endpoints only, usages answer normally:

- ``team-403``: the key lacks the team scope, 403 on ``/teams*`` and ``/projects``;
- ``team-404``: ``/teams/{id}`` and ``/teams/{id}/limits`` answer 404 as for an unknown
  team (``/teams`` still lists it, ``/projects`` answers);
- ``two-teams``: ``GET /teams`` lists a second team, ``team_second`` (which the other
  endpoints do not know: 404);
- ``team-garbage``: 200 with bodies outside the schema: ``{"teams": 42}``,
  ``{"team": 42}``, a limits body that is not JSON, a projects page whose item is
  ``{"id": 7}``;
- ``projects-page-500``: ``/projects`` answers its first page, then 500 on every page
  asked with a ``paginationToken`` (a failure in the middle of the pagination).

Two knobs of :class:`FakeState` act in every mode: ``history_start`` (a window that
ends by then is answered with no rows, as for an account younger than the history
asked for) and ``refused_windows`` (a window that starts at one of its keys is
answered with that status).

Run it alone: ``python -m testkit.fake_upstream --port 18080 --mode ok``.
"""

from __future__ import annotations

import argparse
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import (
    USAGES,
    Refused,
    Route,
    check_request,
    read_query,
    route,
    team_answer,
)
from testkit.oracle import model_totals

MODES = ("ok", "500", "429", "401", "403", "garbage", "invalid", "drift", "slow", "oversized",
         "gateway-too-large", "empty", "team-403", "team-404", "two-teams", "team-garbage",
         "projects-page-500")
SECOND_TEAM_ID = "team_second"
API_LIMIT_BYTES = 6 * 1024 * 1024


@dataclass
class Request:
    """What the fake saw of one request."""

    path: str
    params: dict[str, str]
    authorization: str | None
    at: float


@dataclass
class FakeState:
    account: DemoAccount
    api_key: str
    api_secret: str
    mode: str = "ok"
    retry_after: str = "30"
    slow_seconds: float = 5.0
    # Windows longer than this are refused as too large (413), in mode "oversized"
    # only, or in every mode when too_large_above is set (the gateway limit of a
    # large account: a few days of its usage exceed 6 MB).
    max_window_seconds: float = 86400.0
    # Demo seconds per real second since `origin`: activity that a test can see
    # grow smoothly in a minute (integer job counts step too slowly at 1).
    speed: float = 1.0
    origin: float = field(default_factory=time.time)
    # Downward revisions: CU taken off a model's cost (a refund), by model id.
    refunds: dict[str, float] = field(default_factory=dict)
    # Other names for some entities, by id: a model's name or a user's full name
    # (quotes, backslashes, line breaks: what a label value must carry).
    names: dict[str, str] = field(default_factory=dict)
    too_large_above: float | None = None
    # No activity before this moment: a window that ends by then is answered 200 with
    # no rows (an account younger than the history asked for).
    history_start: datetime | None = None
    # Windows refused whatever the mode, by their start: the status to answer.
    refused_windows: dict[datetime, int] = field(default_factory=dict)
    # Wall-clock seconds of the team endpoints' now; a test with a fake clock sets its own.
    clock: Callable[[], float] = time.time
    requests: list[Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def demo_end(self, end: datetime) -> datetime:
        """Where the demo account's data ends for a request that ends at *end*: time runs
        *speed* times faster since *origin*."""
        if self.speed == 1.0:
            return end
        elapsed = end.timestamp() - self.origin
        return datetime.fromtimestamp(self.origin + elapsed * self.speed, timezone.utc)

    def now(self) -> datetime:
        """The moment the team endpoints answer for: ``clock()``, sped up as usages are."""
        return self.demo_end(datetime.fromtimestamp(self.clock(), timezone.utc))

    def model_totals(self, start: datetime, end: datetime) -> dict[str, dict[str, float]]:
        """The fake's exact answer for ``[start, end)``, per model and field: the demo
        account's truth (:func:`testkit.oracle.model_totals`), sped up, refunds taken off."""
        totals = model_totals(self.account, start, self.demo_end(end))
        for model_id, refund in self.refunds.items():
            if totals.get(model_id, {}).get("jobs"):  # the refund rides on its first point
                totals[model_id]["cost"] -= refund
        return totals


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        state = self.server.state
        url = urlsplit(self.path)
        # The bare ?dropZeroPoints form is a parameter too (keep_blank_values).
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        # in_flight counts usages calls: the refreshes' single flight (team calls go beside).
        usages = _endpoint(url.path) == USAGES
        with state.lock:
            state.requests.append(Request(url.path, params, self.headers.get("Authorization"),
                                          time.time()))
            state.in_flight += usages
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            self._answer(state, url.path, params)
        finally:
            with state.lock:
                state.in_flight -= usages

    def _answer(self, state: FakeState, path: str, params: dict[str, str]) -> None:
        try:  # routing and auth as the demo API has them; the faults come after
            where = check_request(path, self.headers.get("Authorization"), state.api_key,
                                  state.api_secret)
        except Refused as refused:
            return self._send(refused.status, refused.body)
        if where.endpoint != USAGES:
            return self._answer_team(state, where, params)
        mode = state.mode
        if mode in ("500", "401", "403"):
            return self._send(int(mode), b'{"message":"failure injected by the fake"}')
        if mode == "429":
            return self._send(429, b'{"message":"Too Many Requests"}',
                              {"Retry-After": state.retry_after})
        if mode == "garbage":
            return self._send(200, b"<html>502 Bad Gateway</html>{{{")
        if mode == "empty":
            return self._send(200, b"{}")
        try:
            query = read_query(params)
        except Refused as refused:
            return self._send(refused.status, refused.body)
        start, end = query.start, query.end
        if start in state.refused_windows:
            return self._send(state.refused_windows[start],
                              b'{"message":"window refused by the fake"}')
        length = (end - start).total_seconds()
        if (mode == "oversized" and length > state.max_window_seconds) or \
                (state.too_large_above is not None and length > state.too_large_above):
            return self._send(413, b'{"message":"Response payload size exceeded"}')
        if mode == "gateway-too-large" and \
                (end - start).total_seconds() > state.max_window_seconds:
            return self._send(502, b'{"message":"body size is too long"}')
        if mode == "slow":
            time.sleep(state.slow_seconds)
        end = state.demo_end(end)
        body: dict[str, Any] = state.account.response(
            start, end, query.sections, drop_zero_points=query.drop_zero_points)
        if state.history_start is not None and query.end <= state.history_start:
            body = _no_rows(body)
        for row in body.get("modelUsages", []):
            if row["modelId"] in state.refunds and row["points"]:
                row["points"][0]["cost"] -= state.refunds[row["modelId"]]
        entities = body.get("entities", {})
        for entity, field_name in (("models", "name"), ("users", "fullName")):
            for item in entities.get(entity, []):
                item[field_name] = state.names.get(item["id"], item[field_name])
        if mode == "drift":
            body = _drift(body)
        if mode == "invalid":
            body["usages"][0]["points"].append({"time": None, "value": "twelve"})
        data = json.dumps(body, separators=(",", ":")).encode()
        if len(data) > API_LIMIT_BYTES:
            return self._send(413, b'{"message":"Response payload size exceeded"}')
        self._send(200, data)

    def _answer_team(self, state: FakeState, where: Route, params: dict[str, str]) -> None:
        """A team endpoint, with the team modes' faults (see the module's docstring)."""
        mode, endpoint = state.mode, where.endpoint
        if mode == "team-403":
            return self._send(403, b'{"message":"Forbidden: the key lacks the team scope"}')
        if mode == "team-404" and where.team_id is not None:
            return self._send(404, b'{"message":"Team not found"}')
        if mode == "projects-page-500" and endpoint == "projects" and \
                params.get("paginationToken"):
            return self._send(500, b'{"message":"failure injected by the fake"}')
        if mode == "team-garbage":
            return self._send(200, _GARBAGE[endpoint])
        try:
            body = team_answer(state.account, where, params, state.now())
        except Refused as refused:
            return self._send(refused.status, refused.body)
        if mode == "two-teams" and endpoint == "teams":
            second = {**body["teams"][0], "id": SECOND_TEAM_ID, "name": "Second Studio",
                      "projects": []}
            second["context"] = {**second["context"], "userRole": "member"}
            body["teams"].append(second)
        self._send(200, json.dumps(body, separators=(",", ":")).encode())

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


def _no_rows(body: dict[str, Any]) -> dict[str, Any]:
    """*body* with every section and entity list emptied: what upstream answers for a
    window without activity."""
    empty = {key: [] if isinstance(value, list) else value for key, value in body.items()}
    if isinstance(body.get("entities"), dict):
        empty["entities"] = {key: [] for key in body["entities"]}
    return empty


# What mode team-garbage answers (200) per team endpoint: outside the SDK's types.
_GARBAGE = {"teams": b'{"teams":42}', "team": b'{"team":42}',
            "team_limits": b"<html>502 Bad Gateway</html>{{{",
            "projects": b'{"projects":[{"id":7}],"nextPaginationToken":null}'}


def _drift(body: dict[str, Any]) -> dict[str, Any]:
    """Schema drift that must not break the exporter: unknown fields and sections, numbers
    as strings, nulls, and new names (usage ``brand-new-usage`` = 7 without CU, kind
    ``hologram`` = 3, a ``null`` NSFW label, verdict ``needs-review`` = 2) exported as
    they come; the first user's costDetails is not an object; known totals stay the same."""
    body["newSection"] = [{"anything": 1}]
    body["usages"].append({"usageName": "brand-new-usage", "granularity": "2h",
                           "points": [{"time": "2026-01-01T00:00:00Z", "value": "7",
                                       "apiKey": None, "extra": True}]})
    for row in body["modelUsages"]:
        row["newField"] = {"nested": [1, 2]}
        for point in row["points"]:
            point["cost"] = str(point["cost"])  # numbers as strings
            point["futureMetric"] = None
    body["assetUsages"].append({"kind": "hologram", "points": [{"count": 3, "countApiKey": None}]})
    body["nsfwUsages"].append({"label": None, "points": None})
    body["entities"]["models"].append({"id": "model_new", "name": None, "extra": "x"})
    # SDK 2.4's fields, odd: a costDetails that is not an object (that user's actions are
    # left out, the rest served), a verdict the SDK does not list, a cost as text.
    body["consumption"][0]["costDetails"] = "n/a"
    body["qualityGateUsages"].append({"verdict": "needs-review",
                                      "points": [{"count": 2, "countApiKey": 1}]})
    for row in body["usages"][:1]:
        for point in row["points"]:
            point["cost"] = str(point["cost"])
    return body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver listens with a backlog of 5: the first refreshes of many
    # accounts would wait for SYN retransmissions, which no real gateway does.
    request_queue_size = 128
    state: FakeState


class FakeUpstream:
    """A loopback server answering like Scenario's API; ``url`` is the ``/v1`` base URL."""

    def __init__(self, account: DemoAccount | None = None, api_key: str = "test-key",
                 api_secret: str = "test-secret-value", host: str = "127.0.0.1",
                 port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.state = FakeState(account or DemoAccount(), api_key, api_secret)
        self._server = _Server((host, port), _Handler)
        self._server.state = self.state
        self._scheme = "http"
        if tls is not None:  # HTTPS with the caller's certificate (custom-CA tests)
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}/v1"

    @property
    def request_count(self) -> int:
        with self.state.lock:
            return len(self.state.requests)

    def calls(self, endpoint: str) -> int:
        """How many requests reached *endpoint* (``usages``, ``teams``, ``team``,
        ``team_limits``, ``projects``: :func:`exporter.upstream.demo_api.route`)."""
        with self.state.lock:
            paths = [r.path for r in self.state.requests]
        return sum(1 for path in paths if _endpoint(path) == endpoint)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        self.state.mode = mode

    def start(self) -> FakeUpstream:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _endpoint(path: str) -> str | None:
    try:
        return route(path).endpoint
    except Refused:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--models", type=int, default=36)
    parser.add_argument("--users", type=int, default=18)
    parser.add_argument("--too-large-above-days", type=float, default=None,
                        help="answer 413 for windows longer than this many days")
    args = parser.parse_args()
    fake = FakeUpstream(DemoAccount(models=args.models, users=args.users), port=args.port)
    fake.set_mode(args.mode)
    if args.too_large_above_days is not None:
        fake.state.too_large_above = args.too_large_above_days * 86400
    print(f"serving {fake.url} (key test-key, secret test-secret-value)", flush=True)
    fake.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
