"""The real exporter's HTTP surface and life: health, readiness, the landing page and
404s, OpenMetrics negotiation, gzip, and a prompt exit on SIGTERM.

Each test starts ``python -m exporter`` against the loopback fake.
"""

from __future__ import annotations

import gzip
import socket

import pytest

from exporter import __version__
from testkit.exposition import Exposition
from testkit.fake_upstream import FakeUpstream
from testkit.processes import Processes
from testkit.served import (
    ACCOUNT,
    MODEL_COUNTERS,
    business,
    is_up,
    landing_row,
    scrape_until,
    start,
)
from testkit.waiting import wait_for

# -- HTTP surface ------------------------------------------------------------------------------


def test_health_readiness_landing_page_and_404(processes: Processes,
                                               fake: FakeUpstream) -> None:
    fake.state.slow_seconds = 3.0
    fake.set_mode("slow")
    proc = start(processes, fake, "--cache.ttl", "1h")
    healthy = proc.get("/-/healthy")
    ready = proc.get("/-/ready")
    assert healthy.status_code == 200
    assert ready.status_code == 503, "ready before the first refresh attempt"
    assert "starting" in landing_row(proc.get("/").text)[1]

    proc.wait_ready(timeout=15)
    page = proc.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Scenario Exporter" in page.text and __version__ in page.text
    assert 'href="/metrics"' in page.text
    row = landing_row(page.text)
    assert row[1] == "up" and row[4] == ""
    assert proc.get("/-/healthy").text.strip() == "Healthy"

    for path in ("/nope", "/metrics/extra", "/-/", "/favicon.ico"):
        assert proc.get(path).status_code == 404, path
    assert proc.http.post(proc.url + "/metrics").status_code == 405
    assert fake.calls("usages") == 1


def test_openmetrics_negotiation(processes: Processes, fake: FakeUpstream) -> None:
    proc = start(processes, fake, "--cache.ttl", "1h")
    text = scrape_until(proc, is_up, "the first refresh to succeed")
    response = proc.get("/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert response.text.count("# EOF") == 1
    om = Exposition.parse(response.text, openmetrics=True)
    period_start = text.value("scenario_period_start_timestamp_seconds", account=ACCOUNT)

    counters = [name for name in MODEL_COUNTERS] + [
        "scenario_assets_created_total", "scenario_nsfw_assets_total", "scenario_usage_total",
        "scenario_user_consumption_creative_units_total"]
    for total in counters:
        base = total.removesuffix("_total")
        values = [k for k in om.samples if k[0] == total]
        created = [v for k, v in om.samples.items() if k[0] == base + "_created"]
        assert values and len(created) == len(values), base
        assert set(created) == {period_start}, base
        # Same data in both formats.
        assert om.samples.keys() >= {k for k in text.samples if k[0] == total}
        assert all(om.samples[k] == v for k, v in text.samples.items() if k[0] == total)
    # The text format carries no _created for business counters (one more series each).
    assert not [k for k in text.samples if k[0].endswith("_created")]


@pytest.mark.parametrize("accept", [None, "application/openmetrics-text; version=1.0.0"])
def test_gzip(processes: Processes, fake: FakeUpstream, accept: str | None) -> None:
    proc = start(processes, fake, "--cache.ttl", "1h")
    scrape_until(proc, is_up, "the first refresh to succeed")
    openmetrics = accept is not None
    headers = {"Accept": accept} if accept else {}
    plain = proc.get("/metrics", headers)
    for _ in range(2):  # the second answer comes from the cached, primed compressor
        with proc.http.stream("GET", proc.url + "/metrics",
                              headers={**headers, "Accept-Encoding": "gzip"}) as response:
            raw = b"".join(response.iter_raw())
            assert response.headers["content-encoding"] == "gzip"
            assert "Accept-Encoding" in response.headers.get("vary", "")
        assert int(response.headers["content-length"]) == len(raw) < len(plain.content)
        text = gzip.decompress(raw).decode()
        if openmetrics:
            assert text.endswith("# EOF\n")
        assert business(Exposition.parse(text, openmetrics)) == \
            business(Exposition.parse(plain.text, openmetrics))


# -- process life ------------------------------------------------------------------------------


def test_sigterm_exits_zero_promptly_even_during_a_refresh(processes: Processes,
                                                           fake: FakeUpstream) -> None:
    fake.state.slow_seconds = 30.0  # a refresh that would outlive any reasonable shutdown
    fake.set_mode("slow")
    proc = start(processes, fake, "--cache.ttl", "1h")
    port = proc.port
    wait_for(lambda: fake.state.in_flight == 1, 10, "the first refresh to reach upstream")
    assert proc.get("/-/healthy").status_code == 200

    assert proc.terminate(timeout=5.0) == 0
    proc.wait()
    assert any("shutting down" in line for line in proc.stderr_lines)
    assert not any("Traceback" in line for line in proc.stderr_lines)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
