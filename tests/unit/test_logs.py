"""Logs: one line per event in logfmt or JSON; secrets redacted whatever logs them."""

from __future__ import annotations

import io
import json
import logging

import pytest

from exporter.core.logs import REDACTED, configure_logging, secret_variants
from testkit.web import basic_authorization


@pytest.fixture
def stream() -> io.StringIO:
    buffer = io.StringIO()
    yield buffer
    logging.getLogger().handlers.clear()


def test_logfmt_lines_quote_what_needs_quoting(stream: io.StringIO) -> None:
    configure_logging("info", "logfmt", stream=stream)
    logging.getLogger("exporter.scheduler").info("refresh", extra={"fields": {
        "account": "studio", "window": "2026-11-01/2026-11-02", "status": "ok",
        "bytes": 1234, "duration_seconds": 0.25, "error": 'said "no"'}})
    line = stream.getvalue().strip()
    assert "\n" not in line
    assert " level=info logger=exporter.scheduler msg=refresh account=studio " in line
    assert "bytes=1234 duration_seconds=0.25" in line
    assert 'error="said \\"no\\""' in line


def test_json_lines_are_objects(stream: io.StringIO) -> None:
    configure_logging("debug", "json", stream=stream)
    logging.getLogger("exporter").debug("upstream response", extra={"fields": {"status": 200}})
    record = json.loads(stream.getvalue())
    assert record["level"] == "debug" and record["status"] == 200
    assert record["msg"] == "upstream response" and record["ts"].endswith("Z")


def test_level_filters(stream: io.StringIO) -> None:
    configure_logging("warning", "logfmt", stream=stream)
    logging.getLogger("exporter").info("hidden")
    logging.getLogger("exporter").warning("shown")
    assert "hidden" not in stream.getvalue() and "shown" in stream.getvalue()


def test_secrets_and_their_basic_encoding_are_redacted_from_any_logger(
        stream: io.StringIO) -> None:
    secrets = secret_variants("key-1", "hunter2-secret")
    configure_logging("debug", "logfmt", secrets, stream=stream)
    header = basic_authorization("key-1", "hunter2-secret")
    logging.getLogger("some.library").debug("Authorization: %s", header)
    logging.getLogger("exporter").error("oops", extra={"fields": {"secret": "hunter2-secret"}})
    try:
        raise RuntimeError("hunter2-secret in an exception")
    except RuntimeError:
        logging.getLogger("exporter").exception("crash")
    text = stream.getvalue()
    assert "hunter2-secret" not in text and header.removeprefix("Basic ") not in text
    assert text.count(REDACTED) >= 3


def test_http_client_loggers_stay_quiet_at_debug(stream: io.StringIO) -> None:
    configure_logging("debug", "logfmt", stream=stream)
    logging.getLogger("httpx").info("HTTP Request: GET https://api/v1/usages")
    logging.getLogger("httpcore.http11").debug("send_request_headers.started")
    assert stream.getvalue() == ""
