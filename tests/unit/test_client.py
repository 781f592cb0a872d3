"""The upstream client: the request it sends, and every upstream failure turned into
a labelled :class:`UpstreamError` (never a secret in it), a credential file gone
included."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from prometheus_client import CollectorRegistry

from exporter.config.load import build_settings
from exporter.core.errors import UpstreamError
from exporter.core.period import PeriodWindow, current_window
from exporter.metrics.own import Telemetry
from exporter.upstream.client import UsageClient, parse_retry_after
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import demo_transport
from testkit.doubles import ACCOUNT, recording_transport
from testkit.web import basic_authorization

WINDOW = PeriodWindow(datetime(2026, 11, 1, tzinfo=timezone.utc),
                      datetime(2026, 11, 20, 12, 30, 15, 250000, tzinfo=timezone.utc))


def test_request_asks_only_what_is_needed_with_basic_auth() -> None:
    seen: list[httpx.Request] = []
    transport = recording_transport(lambda r: httpx.Response(200, json={}), seen)
    client = UsageClient("https://api.example/v1/", 5, transport=transport)
    client.fetch_window(ACCOUNT, WINDOW)
    (request,) = seen
    assert request.url.path == "/v1/usages"
    params = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
    assert params == {"type": "usages,consumption,model-usages,asset-usages,nsfw-usages,"
                              "quality-gate-usages",
                      "dropZeroPoints": "true", "startDate": "2026-11-01T00:00:00.000Z",
                      "endDate": "2026-11-20T12:30:15.250Z", "projectIds": "proj_a,proj_b",
                      "teamId": "team_7", "userIds": "user_1,user_2"}
    assert request.headers["Authorization"] == basic_authorization("key-123", "s3cr3t")
    assert request.headers["User-Agent"].startswith("scenario-exporter/")


@pytest.mark.parametrize(("status", "body", "headers", "reason", "retry_after"), [
    (401, b"{}", {}, "auth", None),
    (403, b"{}", {}, "auth", None),
    (429, b"{}", {"Retry-After": "42"}, "rate_limited", 42.0),
    (429, b"{}", {}, "rate_limited", None),
    (500, b'{"message":"internal"}', {}, "server_error", None),
    (504, b"upstream timed out", {}, "server_error", None),
    (400, b'{"message":"bad dates"}', {}, "client_error", None),
    (200, b"<html>not json", {}, "invalid_response", None),
    (200, b'{"usages":[{"usageName":"x","points":[{"value":"abc"}]}]}', {},
     "invalid_response", None),
])
def test_upstream_failures_become_labelled_errors(status: int, body: bytes,
                                                  headers: dict[str, str], reason: str,
                                                  retry_after: float | None) -> None:
    registry = CollectorRegistry()
    telemetry = Telemetry(registry, ["acme"])
    client = UsageClient("https://api.example/v1", 5, record=telemetry.record_request,
                         transport=httpx.MockTransport(
                             lambda r: httpx.Response(status, content=body, headers=headers)))
    with pytest.raises(UpstreamError) as caught:
        client.fetch_window(ACCOUNT, WINDOW)
    assert caught.value.reason == reason
    assert caught.value.retry_after == retry_after
    assert "s3cr3t" not in str(caught.value)
    code = "invalid_response" if reason == "invalid_response" else str(status)
    assert registry.get_sample_value("scenario_exporter_upstream_requests_total",
                                     {"account": "acme", "code": code}) == 1.0


def test_timeouts_and_connection_errors() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    for handler, reason in ((timeout, "timeout"), (refused, "connection_error")):
        client = UsageClient("https://api.example/v1", 5,
                             transport=httpx.MockTransport(handler))
        with pytest.raises(UpstreamError) as caught:
            client.fetch_window(ACCOUNT, WINDOW)
        assert caught.value.reason == reason


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("120", 0) == 120.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:02:00 GMT", 60.0) == 60.0
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after(None, 0) is None


def test_demo_transport_refuses_wrong_credentials() -> None:
    client = UsageClient("https://api.example/v1", 5, transport=demo_transport(
        DemoAccount(), "key-123", "other-secret"))
    with pytest.raises(UpstreamError) as caught:
        client.fetch_window(ACCOUNT, WINDOW)
    assert caught.value.reason == "auth"
    body = DemoAccount().response(WINDOW.start, WINDOW.end)
    assert json.dumps(body)  # serialisable


def test_a_credential_file_gone_fails_the_refresh_as_auth(tmp_path: Path) -> None:
    """A file removed after start-up is an auth failure naming the file, not a crash."""
    key_file, secret_file = tmp_path / "api-key", tmp_path / "api-secret"
    key_file.write_text("key-one\n")
    secret_file.write_text("secret-one\n")
    (account,) = build_settings({}, {"SCENARIO_API_KEY_FILE": str(key_file),
                                     "SCENARIO_API_SECRET_FILE": str(secret_file)}).accounts
    calls: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    client = UsageClient("https://api.example/v1", 5, transport=httpx.MockTransport(upstream))
    key_file.unlink()
    window = current_window(datetime.now(timezone.utc), "month", 1)
    with pytest.raises(UpstreamError) as failed:
        client.fetch_window(account, window)
    assert failed.value.reason == "auth"
    assert str(key_file) in str(failed.value) and "secret-one" not in str(failed.value)
    assert not calls, "no request without credentials"
