"""The HTTP server itself: what escapes the application, and how requests are routed."""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest

from exporter.web.server import (
    ServerLimits,
    _loop_exception,
)
from testkit.web import http_get, serving

DEADLINE = 10.0


def _echo_path(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = f"{environ['PATH_INFO']}?{environ['QUERY_STRING']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def test_an_error_in_the_application_is_one_line_and_a_bare_500(
        caplog: pytest.LogCaptureFixture) -> None:
    def broken(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise KeyError("internal detail")

    caplog.set_level(logging.DEBUG)
    with serving(broken) as server:
        reply = http_get(server.server_port, "/metrics", timeout=DEADLINE)
        status, body = reply.status, reply.body
    assert status == 500
    assert b"internal detail" not in body and b"KeyError" not in body
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    fields = errors[0].__dict__["fields"]
    assert fields["error"] == "KeyError"
    assert f"error id {fields['error_id']}".encode() in body


@pytest.mark.parametrize(("target", "routed"), [
    ("http://example.com/metrics?name[]=up", "/metrics?name[]=up"),
    ("https://example.com", "/?"),
    ("/metrics", "/metrics?"),
])
def test_absolute_form_targets_are_routed_by_their_path(target: str, routed: str) -> None:
    with serving(_echo_path) as server:
        reply = http_get(server.server_port, target, timeout=DEADLINE)
    assert (reply.status, reply.body.decode()) == (200, routed)
    assert "server" not in reply.headers


@pytest.mark.parametrize(("exception", "level"), [
    (ConnectionResetError(errno.ECONNRESET, "reset"), logging.DEBUG),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), logging.DEBUG),
    (OSError(errno.EMFILE, "Too many open files"), logging.WARNING),
    (RuntimeError("surprise"), logging.ERROR),
])
def test_event_loop_errors_are_one_line_at_their_level(
        caplog: pytest.LogCaptureFixture, exception: Exception, level: int) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.http")
    loop = asyncio.new_event_loop()
    try:
        _loop_exception(loop, {"message": "x", "exception": exception})
    finally:
        loop.close()
    assert [(r.levelno, r.exc_info) for r in caplog.records
            if r.name == "exporter.http"] == [(level, None)]


def test_a_request_longer_than_the_read_timeout_is_still_answered() -> None:
    # A first scrape may wait for data longer than the read timeout, which only
    # bounds reading a request (its body), not the time the application takes.
    def slow(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        time.sleep(1.5)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    with serving(slow, limits=ServerLimits(read_timeout=1)) as server:
        reply = http_get(server.server_port, "/", timeout=DEADLINE)
        assert (reply.status, reply.body) == (200, b"ok")
