"""The WSGI application, driven in-process with the demo transport."""

from __future__ import annotations

import gzip
import html
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import httpx
import pytest

from exporter.config.accounts import DEMO_API_KEY, DEMO_API_SECRET
from exporter.config.load import build_settings
from exporter.live.app import create_app, first_scrape_wait
from exporter.live.exporter import UsageExporter
from exporter.live.service import build_exporter
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import demo_transport
from testkit.web import call


def demo_exporter(transport: httpx.BaseTransport | None = None,
                  spawn: Callable[[Callable[[], None]], None] | None = None) -> UsageExporter:
    settings = build_settings({"demo": True}, {})
    return build_exporter(
        settings, transport=transport or demo_transport(DemoAccount(models=5, users=3),
                                                        DEMO_API_KEY, DEMO_API_SECRET),
        spawn=spawn or (lambda work: work()))


def test_metrics_negotiation_and_gzip() -> None:
    app = create_app(demo_exporter())
    status, headers, body = call(app, "/metrics")
    assert status == "200 OK" and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b'scenario_up{account="demo"} 1.0' in body
    status, headers, body = call(app, "/metrics", headers={
        "Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    text = gzip.decompress(body)
    assert text.endswith(b"# EOF\n") and b"_created{" in text
    assert int(headers["Content-Length"]) == len(body)


def test_landing_page_health_readiness_and_unknown_paths() -> None:
    gate = threading.Event()
    started: list[Callable[[], None]] = []
    exporter = demo_exporter(spawn=started.append)  # refresh held until we run it
    app = create_app(exporter)
    assert call(app, "/-/healthy")[0] == "200 OK"
    assert call(app, "/-/ready")[0].startswith("503")
    status, _, page = call(app, "/")
    assert status == "200 OK" and b"starting" in page and b'href="/metrics"' in page
    exporter.start()
    while started:  # the team's limits first (--period=auto), then the usages they hold
        started.pop(0)()
    gate.set()
    assert call(app, "/-/ready")[0] == "200 OK"
    page = call(app, "/")[2].decode()
    assert "<td>demo</td><td>up</td>" in page and "0.1.0" in page
    assert call(app, "/nope")[0].startswith("404")
    assert call(app, "/metrics/extra")[0].startswith("404")
    status, headers, body = call(app, "/metrics", method="POST")
    assert status.startswith("405") and headers["Allow"] == "GET, HEAD"
    status, headers, body = call(app, "/-/healthy", method="HEAD")
    assert status == "200 OK" and body == b"" and headers["Content-Length"] == "8"


class MarkupAccount(DemoAccount):
    """Upstream data whose model id is markup and whose cost overflows: the refresh fails
    with an error that names the id, so the id reaches the landing page."""

    def response(self, start: datetime, end: datetime, sections: Sequence[str] | None = None,
                 *, drop_zero_points: bool = True) -> dict[str, Any]:
        body = super().response(start, end, sections, drop_zero_points=drop_zero_points)
        for row in body.get("modelUsages", [])[:1]:
            row["modelId"] = MARKUP
            row["points"][0]["cost"] = "1e400"
        return body


MARKUP = "<script>alert(1)</script>"


def test_landing_page_shows_the_last_error_escaped() -> None:
    account = MarkupAccount(models=2, users=1)
    exporter = demo_exporter(demo_transport(account, DEMO_API_KEY, DEMO_API_SECRET))
    app = create_app(exporter)
    call(app, "/metrics")
    (view,) = exporter.views()
    assert view.last_error is not None and MARKUP in view.last_error  # it reaches the page
    page = call(app, "/")[2].decode()
    assert MARKUP not in page and "<script" not in page
    assert f"<td>{html.escape(view.last_error)}</td>" in page
    assert call(app, "/-/ready")[0] == "200 OK"  # attempted, even though it failed
    body = call(app, "/metrics")[2]
    assert b'scenario_up{account="demo"} 0.0' in body
    assert b"scenario_model_cost_creative_units_total{" not in body


def test_landing_page_names_a_server_error() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(503, text="<b>down</b>"))
    app = create_app(demo_exporter(transport))
    call(app, "/metrics")
    page = call(app, "/")[2].decode()
    assert "<td>down</td>" in page and "upstream failed (HTTP 503)" in page
    assert "<b>" not in page  # the upstream body is not shown


@pytest.mark.parametrize(("header", "expected"), [
    (None, 9.5), ("10", 9.5), ("30", 29.5), ("2", 1.8), ("0.5", 0.45), ("abc", 9.5),
    ("-3", 9.5), ("nan", 9.5)])
def test_first_scrape_waits_until_shortly_before_the_scrape_timeout(
        header: str | None, expected: float) -> None:
    assert first_scrape_wait(header) == pytest.approx(expected)


@pytest.mark.parametrize("accept", [
    "application/openmetrics-text; version=1.a",
    "text/plain; version=x.y",
    "application/openmetrics-text; version=2.0\r\n\tX-Injected: yes",
    "application/openmetrics-text; version=1.0.0; escaping=<script>",
    "application/openmetrics-text; version=99999999999999999999.0",
    ";;;,,,=",
    "\x00\xff",
])
def test_a_malformed_accept_falls_back_to_the_text_format(accept: str) -> None:
    status, headers, body = call(create_app(demo_exporter()), "/metrics",
                                 headers={"Accept": accept})
    assert status == "200 OK"
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b'scenario_up{account="demo"} 1.0' in body


def test_a_well_formed_accept_still_negotiates() -> None:
    status, headers, _ = call(create_app(demo_exporter()), "/metrics", headers={
        "Accept": "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;q=0.5"})
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")


@pytest.mark.parametrize(("accept_encoding", "compressed"), [
    ("gzip", True), ("deflate, gzip;q=0.5", True), ("gzip;q=0", False), ("gzip; q=0.000", False),
    ("gzip;q=nope", False), ("identity", False), ("", False),
])
def test_gzip_honours_quality(accept_encoding: str, compressed: bool) -> None:
    _, headers, body = call(create_app(demo_exporter()), "/metrics",
                            headers={"Accept-Encoding": accept_encoding})
    assert ("Content-Encoding" in headers) is compressed
    assert (body[:2] == b"\x1f\x8b") is compressed


@pytest.mark.parametrize("accept", [None, "application/openmetrics-text; version=1.0.0"])
def test_name_filter_keeps_only_the_named_samples(accept: str | None) -> None:
    app = create_app(demo_exporter())
    headers = {"Accept": accept} if accept else {}
    environ_query = "name[]=scenario_up&name%5B%5D=scenario_exporter_build_info"
    status, _, body = call(app, "/metrics?" + environ_query, headers=headers)
    assert status == "200 OK"
    lines = body.decode().splitlines()
    samples = {line.split("{")[0] for line in lines if not line.startswith("#")}
    assert samples == {"scenario_up", "scenario_exporter_build_info"}
    assert "# TYPE scenario_up gauge" in lines
    assert (lines[-1] == "# EOF") is bool(accept)
