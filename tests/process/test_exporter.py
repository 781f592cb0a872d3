"""Integration: the real ``scenario-exporter`` process against the loopback fake upstream.

Every test starts ``python -m exporter`` on a free port (``127.0.0.1:0``, the
port read from the ``listening`` log line) with credentials in the environment,
pointed at :class:`FakeUpstream`. Truth comes from the fake's
:class:`DemoAccount`, whose totals over any window are exact, so exported values
are compared with ``==``, not approximately.
"""

from __future__ import annotations

import base64
import gzip
import json
import platform
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import httpx
import pytest

from exporter import __version__
from exporter.core.period import parse_iso
from exporter.upstream.demo import DemoAccount
from testkit.exposition import Exposition, moment
from testkit.fake_upstream import FakeUpstream
from testkit.oracle import model_totals
from testkit.processes import ExporterProcess, Processes, free_port
from testkit.waiting import wait_for

API_KEY = "itest-key"
API_SECRET = "itest-secret-value"
ACCOUNT = "default"
SECTIONS = {"usages", "consumption", "model-usages", "asset-usages", "nsfw-usages"}
REASONS = ("auth", "rate_limited", "server_error", "timeout", "invalid_response")

MODEL_COUNTERS = {
    "scenario_model_cost_creative_units_total": "cost",
    "scenario_model_cost_by_api_key_creative_units_total": "cost_api_key",
    "scenario_model_discount_creative_units_total": "discount",
    "scenario_model_discount_by_api_key_creative_units_total": "discount_api_key",
    "scenario_model_jobs_total": "jobs",
}
# (response section, id field) -> (counter of the first number, counter of the second, label)
COUNT_SECTIONS = {
    ("assetUsages", "kind"): ("scenario_assets_created_total",
                              "scenario_assets_created_by_api_key_total", "kind"),
    ("nsfwUsages", "label"): ("scenario_nsfw_assets_total",
                              "scenario_nsfw_assets_by_api_key_total", "label"),
}
TIMESTAMPS = ("scenario_data_as_of_timestamp_seconds", "scenario_period_start_timestamp_seconds")

Expected = dict[tuple[str, str], dict[str, float]]


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(DemoAccount(), API_KEY, API_SECRET) as upstream:
        yield upstream


def start(processes: Processes, fake: FakeUpstream, *args: str,
          env: Mapping[str, str] | None = None) -> ExporterProcess:
    """The exporter on a free loopback port, reading *fake* with the right credentials."""
    # The hourly cap paces refreshes (one a minute at the default 60): allow one a second.
    return processes.start(
        "--web.listen-address", "127.0.0.1:0", "--scenario.api-url", fake.url,
        "--upstream.max-requests-per-hour", "3600", *args,
        env={"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": API_SECRET, **(env or {})})


# -- truth -----------------------------------------------------------------------------


def to_millis(when: datetime) -> datetime:
    """What upstream sees of a moment: the client sends ISO 8601 with milliseconds."""
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def iso_millis(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def served_window(expo: Exposition) -> tuple[datetime, datetime]:
    """``[period start, data as of]`` of the default account, from the exposition."""
    start = expo.value("scenario_period_start_timestamp_seconds", account=ACCOUNT)
    as_of = expo.value("scenario_data_as_of_timestamp_seconds", account=ACCOUNT)
    assert start is not None and as_of is not None, "no data served"
    return moment(start), moment(as_of)


def expected_series(account: DemoAccount, start: datetime, end: datetime,
                    with_users: bool = True) -> Expected:
    """Every business counter's true value over ``[start, end)``, by (sample, label).

    Models come from ``model_totals`` (cumulative counts, independent of buckets);
    the count sections and usages are summed here from the fake's own body for the
    whole window, which the exporter may have received in pieces.
    """
    expected: Expected = {}
    totals = model_totals(account, start, end)
    for sample, field in MODEL_COUNTERS.items():
        expected[(sample, "model_id")] = {m: t[field] for m, t in totals.items()}
    body = account.response(start, end)
    for (section, key), (first, second, label) in COUNT_SECTIONS.items():
        expected[(first, label)] = {r[key]: float(sum(p["count"] for p in r["points"]))
                                    for r in body[section]}
        expected[(second, label)] = {r[key]: float(sum(p["countApiKey"] for p in r["points"]))
                                     for r in body[section]}
    expected[("scenario_usage_total", "usage_name")] = {
        r["usageName"]: sum(float(p["value"]) for p in r["points"]) for r in body["usages"]}
    expected[("scenario_usage_by_api_key_total", "usage_name")] = {
        r["usageName"]: sum(float(p["apiKey"]) for p in r["points"]) for r in body["usages"]}
    if with_users:
        # Consumption rows are per-window figures rounded by upstream: two halves of a
        # window do not add up to the rounded whole, so only a one-request window has them.
        expected[("scenario_user_consumption_creative_units_total", "user_id")] = {
            r["userId"]: float(r["value"]) for r in body["consumption"]}
        expected[("scenario_user_discount_creative_units_total", "user_id")] = {
            r["userId"]: abs(float(r["discount"])) for r in body["consumption"]}
    return expected


def assert_served(expo: Exposition, expected: Expected) -> None:
    for (sample, label), values in expected.items():
        served = expo.by_label(sample, label, account=ACCOUNT)
        assert served == values, f"{sample} differs from upstream's sums"


def business(expo: Exposition) -> dict[Any, float]:
    """The per-account business samples (what must survive an upstream failure)."""
    return {key: value for key, value in expo.samples.items()
            if key[0].startswith("scenario_") and not key[0].startswith("scenario_exporter_")
            and key[0] != "scenario_up"}


def withdrawable(expo: Exposition) -> dict[Any, float]:
    """The counters and _info series: what is withdrawn when data passes --cache.max-stale."""
    return {key: value for key, value in business(expo).items()
            if key[0].endswith(("_total", "_info"))}


def scrape_until(proc: ExporterProcess, condition: Any, message: str,
                 timeout: float = 15.0) -> Exposition:
    """Scrape every 50 ms until *condition(exposition)* holds."""
    def attempt() -> Exposition | None:
        expo = proc.metrics()
        return expo if condition(expo) else None
    return wait_for(attempt, timeout, message, interval=0.05)  # type: ignore[no-any-return]


def is_up(expo: Exposition) -> bool:
    return expo.value("scenario_up", account=ACCOUNT) == 1.0


def failures(expo: Exposition, reason: str) -> float | None:
    return expo.value("scenario_exporter_refresh_failures_total", account=ACCOUNT,
                      reason=reason)


def requests_with(expo: Exposition, code: str) -> float:
    return expo.value("scenario_exporter_upstream_requests_total", account=ACCOUNT,
                      code=code) or 0.0


def landing_row(page: str, account: str = ACCOUNT) -> list[str]:
    """The cells of *account*'s row: account, upstream, last refresh, data age, last error."""
    match = re.search(rf"<tr><td>{re.escape(account)}</td>(?:<td>.*?</td>)+</tr>", page)
    assert match, f"no row for account {account} on the landing page"
    return re.findall(r"<td>(.*?)</td>", match.group(0))


def window_seconds(request: Any) -> float:
    return (parse_iso(request.params["endDate"])
            - parse_iso(request.params["startDate"])).total_seconds()


# -- values --------------------------------------------------------------------------


def test_exposed_values_equal_upstream_sums(processes: Processes, fake: FakeUpstream) -> None:
    proc = start(processes, fake, "--cache.ttl", "1h", "--budget.creative-units", "125000.5")
    expo = scrape_until(proc, is_up, "the first refresh to succeed")
    start_at, as_of = served_window(expo)

    # The window is the calendar month so far, and it is what was asked upstream.
    assert start_at == as_of.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert fake.request_count == 1
    sent = fake.state.requests[0]
    assert sent.path == "/v1/usages"
    assert sent.params["startDate"] == iso_millis(start_at)
    assert sent.params["endDate"] == iso_millis(as_of)
    assert set(sent.params["type"].split(",")) == SECTIONS
    assert sent.params["dropZeroPoints"] == "true"
    assert "projectIds" not in sent.params
    token = base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
    assert sent.authorization == f"Basic {token}"

    account = fake.state.account
    end = to_millis(as_of)
    assert_served(expo, expected_series(account, start_at, end))
    assert sum(expo.by_label("scenario_model_cost_creative_units_total", "model_id").values()) > 0

    names = {m["id"]: m["name"] for m in account.response(start_at, end)["entities"]["models"]}
    info = {dict(labels)["model_id"]: dict(labels)["model_name"]
            for (sample, labels), value in expo.samples.items()
            if sample == "scenario_model_info" and value == 1.0}
    assert info == names
    users = {dict(labels)["user_id"]: dict(labels)["is_api_key"]
             for (sample, labels), _ in expo.samples.items() if sample == "scenario_user_info"}
    assert users == {u["id"]: str(u["isApiKey"]).lower()
                     for u in account.response(start_at, end)["entities"]["users"]}

    assert expo.value("scenario_budget_creative_units", account=ACCOUNT) == 125000.5
    assert requests_with(expo, "200") == 1
    body = json.dumps(account.response(start_at, end, sorted(SECTIONS)), separators=(",", ":"))
    assert expo.value("scenario_exporter_upstream_response_bytes", account=ACCOUNT) == \
        len(body.encode())
    for reason in REASONS:  # initialised at 0, so that rate() sees the first failure
        assert failures(expo, reason) == 0.0
    assert expo.value("scenario_exporter_upstream_decreases_total", account=ACCOUNT) == 0.0
    assert expo.value("scenario_exporter_build_info", version=__version__,
                      python_version=platform.python_version()) == 1.0

    # Within the TTL, more scrapes are answered from memory, with the same values.
    again = proc.metrics()
    assert business(again) == business(expo)
    assert fake.request_count == 1


@pytest.mark.parametrize("mode", ["oversized", "gateway-too-large"])
def test_too_large_windows_are_split_and_add_up(processes: Processes, fake: FakeUpstream,
                                                mode: str) -> None:
    # An anchor day about five days ago: a window long enough to split twice.
    target = datetime.now(timezone.utc) - timedelta(days=5)
    anchor = min(target.day, 28)
    fake.state.max_window_seconds = 2 * 86400.0
    fake.set_mode(mode)
    proc = start(processes, fake, "--cache.ttl", "1h", "--period.anchor-day", str(anchor))
    expo = scrape_until(proc, is_up, "the split refresh to succeed")
    start_at, as_of = served_window(expo)
    assert start_at.day == anchor and timedelta(days=5) <= as_of - start_at <= timedelta(days=9)

    requests = list(fake.state.requests)
    refused = [r for r in requests if window_seconds(r) > fake.state.max_window_seconds]
    answered = [r for r in requests if window_seconds(r) <= fake.state.max_window_seconds]
    assert refused and len(answered) >= 3
    # The answered windows tile the whole period exactly: no gap, no overlap.
    tiles = sorted((r.params["startDate"], r.params["endDate"]) for r in answered)
    assert tiles[0][0] == iso_millis(start_at) and tiles[-1][1] == iso_millis(as_of)
    assert all(a[1] == b[0] for a, b in pairwise(tiles))

    refused_code = "413" if mode == "oversized" else "502"
    assert requests_with(expo, refused_code) == len(refused)
    assert requests_with(expo, "200") == len(answered)
    assert_served(expo, expected_series(fake.state.account, start_at, to_millis(as_of),
                                        with_users=False))
    assert failures(expo, "server_error") == 0.0


def test_schema_drift_is_exported_as_it_comes(processes: Processes,
                                              fake: FakeUpstream) -> None:
    fake.set_mode("drift")
    proc = start(processes, fake, "--cache.ttl", "1h")
    expo = scrape_until(proc, is_up, "the drifted response to be accepted")
    start_at, as_of = served_window(expo)

    expected = expected_series(fake.state.account, start_at, to_millis(as_of))
    # What the fake's drift adds: a new usage name, a new kind, a null NSFW label.
    expected[("scenario_usage_total", "usage_name")]["brand-new-usage"] = 7.0
    expected[("scenario_usage_by_api_key_total", "usage_name")]["brand-new-usage"] = 0.0
    expected[("scenario_assets_created_total", "kind")]["hologram"] = 3.0
    expected[("scenario_assets_created_by_api_key_total", "kind")]["hologram"] = 0.0
    expected[("scenario_nsfw_assets_total", "label")]["unknown"] = 0.0
    expected[("scenario_nsfw_assets_by_api_key_total", "label")]["unknown"] = 0.0
    assert_served(expo, expected)
    assert requests_with(expo, "200") == 1
    assert failures(expo, "invalid_response") == 0.0


# One id per section of the ledger: each counts once when it vanishes.
_ID_SERIES = {"scenario_model_cost_creative_units_total": "model_id",
              "scenario_assets_created_total": "kind", "scenario_nsfw_assets_total": "label",
              "scenario_usage_total": "usage_name",
              "scenario_user_consumption_creative_units_total": "user_id"}


def test_upstream_dropping_data_is_served_and_counted_once(processes: Processes,
                                                           fake: FakeUpstream) -> None:
    """Served as upstream says (a replica started now would serve the same), and each
    vanished id counts once, not at every refresh that follows."""
    proc = start(processes, fake, "--cache.ttl", "1s")
    before = scrape_until(proc, is_up, "the first refresh to succeed")
    ids = sum(len(before.by_label(name, label, account=ACCOUNT))
              for name, label in _ID_SERIES.items())
    fake.set_mode("empty")  # a 200 with no sections: every id "disappears"
    after = scrape_until(proc, lambda e: (e.value("scenario_exporter_upstream_decreases_total",
                                                  account=ACCOUNT) or 0) > 0,
                         "the revision to be counted")
    assert is_up(after)
    assert not [k for k in withdrawable(after) if k[0].endswith("_total")]
    requests = requests_with(after, "200")
    later = scrape_until(proc, lambda e: requests_with(e, "200") >= requests + 3,
                         "three more refreshes")
    assert later.value("scenario_exporter_upstream_decreases_total", account=ACCOUNT) == ids


# -- one upstream call for many scrapes -------------------------------------------------------


def _concurrent_scrapes(url: str, count: int = 32) -> list[httpx.Response]:
    barrier = threading.Barrier(count)

    def scrape(_: int) -> httpx.Response:
        with httpx.Client(trust_env=False, timeout=20.0) as client:
            barrier.wait(10)
            return client.get(url + "/metrics", headers={
                "Accept-Encoding": "identity", "X-Prometheus-Scrape-Timeout-Seconds": "10"})

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(scrape, range(count)))


def test_32_concurrent_first_scrapes_cause_one_upstream_call(processes: Processes,
                                                             fake: FakeUpstream) -> None:
    fake.state.slow_seconds = 1.5  # the first refresh is still running when they arrive
    fake.set_mode("slow")
    proc = start(processes, fake, "--cache.ttl", "1h")
    responses = _concurrent_scrapes(proc.url)

    assert [r.status_code for r in responses] == [200] * 32
    pages = [Exposition.parse(r.text) for r in responses]
    assert all(is_up(page) for page in pages), "a first scrape did not wait for the data"
    assert len({json.dumps(sorted(map(str, business(p).items()))) for p in pages}) == 1
    assert fake.request_count == 1
    assert fake.state.max_in_flight == 1


def test_scrapes_during_a_refresh_are_answered_from_memory(processes: Processes,
                                                           fake: FakeUpstream) -> None:
    proc = start(processes, fake, "--cache.ttl", "1s")
    first = scrape_until(proc, is_up, "the first refresh to succeed")
    fake.state.slow_seconds = 3.0
    fake.set_mode("slow")
    # Past the TTL, a scrape starts one background refresh, which the fake holds.
    wait_for(lambda: proc.metrics() and fake.request_count == 2, 10,
             "a refresh to start after the TTL", interval=0.05)
    responses = _concurrent_scrapes(proc.url)
    still_running = fake.state.in_flight == 1

    assert [r.status_code for r in responses] == [200] * 32
    assert still_running, "the scrapes waited for the refresh (stale-while-revalidate)"
    for response in responses:  # the data already held, at once
        assert business(Exposition.parse(response.text)) == business(first)
    assert fake.request_count == 2
    assert fake.state.max_in_flight == 1
    newer = scrape_until(proc, lambda e: served_window(e)[1] > served_window(first)[1],
                         "the slow refresh to land")
    assert is_up(newer)


# -- upstream faults ---------------------------------------------------------------------------


FAULTS = [
    # mode, expected failure reason, expected upstream `code`, extra flags
    pytest.param("500", "server_error", "500", (), id="5xx"),
    pytest.param("429", "rate_limited", "429", (), id="429-retry-after"),
    pytest.param("401", "auth", "401", (), id="401"),
    pytest.param("403", "auth", "403", (), id="403"),
    pytest.param("garbage", "invalid_response", "invalid_response", (), id="garbage-json"),
    pytest.param("invalid", "invalid_response", "invalid_response", (), id="non-numeric"),
    pytest.param("slow", "timeout", "timeout", ("--upstream.timeout", "1s"), id="slow-timeout"),
]


@pytest.mark.parametrize("mode, reason, code, flags", FAULTS)
def test_upstream_fault_keeps_serving_last_good_data(processes: Processes, fake: FakeUpstream,
                                                     mode: str, reason: str, code: str,
                                                     flags: tuple[str, ...]) -> None:
    fake.state.retry_after = "45"
    fake.state.slow_seconds = 4.0
    proc = start(processes, fake, "--cache.ttl", "1s", *flags)
    good = scrape_until(proc, is_up, "the first refresh to succeed")
    assert requests_with(good, code) == 0

    fake.set_mode(mode)
    failed = scrape_until(proc, lambda e: (failures(e, reason) or 0) >= 1,
                          f"a refresh to fail with reason {reason}")

    assert failed.value("scenario_up", account=ACCOUNT) == 0.0
    assert failures(failed, reason) == 1.0
    assert all(failures(failed, other) == 0.0 for other in REASONS if other != reason)
    assert requests_with(failed, code) == 1
    assert requests_with(failed, "200") == 1
    # The last good data is still served, unchanged, window included.
    assert business(failed) == business(good)
    row = landing_row(proc.get("/").text)
    assert row[1] == "down" and row[4], f"landing page row {row}"
    assert proc.get("/-/ready").status_code == 200  # ready means "attempted", not "up"

    log = proc.wait_for_line(lambda line: "refresh failed" in line and f"reason={reason}" in line)
    if mode == "429":
        # Retry-After (45 s) wins over the first back-off step (at most 10 s).
        retry_in = re.search(r"retry_in_seconds=([\d.]+)", log)
        assert retry_in and float(retry_in.group(1)) >= 45.0, log
    # Back-off: the failure left nothing fresh, so without it the next scrape would call
    # upstream again; scrapes keep coming, upstream hears nothing more.
    calls = fake.request_count
    for _ in range(8):
        assert proc.get("/metrics").status_code == 200
        threading.Event().wait(0.1)  # a scrape interval, not waiting for a condition
    assert fake.request_count == calls


def test_stale_data_is_withdrawn_past_max_stale(processes: Processes,
                                                fake: FakeUpstream) -> None:
    max_stale = 2.0
    proc = start(processes, fake, "--cache.ttl", "1s", "--cache.max-stale", "2s")
    good = scrape_until(proc, is_up, "the first refresh to succeed")
    as_of = served_window(good)[1].timestamp()
    fake.set_mode("500")

    def withdrawn() -> Exposition | None:
        before = time.time()
        expo = proc.metrics()
        after = time.time()
        if withdrawable(expo):
            # Still served: only while the data is younger than the bound.
            assert before - as_of <= max_stale, "stale data served past --cache.max-stale"
            assert business(expo) == business(good)
            return None
        assert after - as_of > max_stale, "data withdrawn before --cache.max-stale"
        return expo

    expo = wait_for(withdrawn, 15, "the business series to be withdrawn", interval=0.05)
    # The account, its timestamps and budget, and the exporter's own series stay (docs/
    # metrics.md, Staleness): the dashboards show a gap, and the staleness alert fires.
    assert expo.value("scenario_up", account=ACCOUNT) == 0.0
    assert served_window(expo) == served_window(good)
    assert failures(expo, "server_error") == 1.0
    assert requests_with(expo, "500") == 1
    assert landing_row(proc.get("/").text)[1] == "down"


def test_auth_failure_from_the_start(processes: Processes, fake: FakeUpstream) -> None:
    proc = start(processes, fake, "--cache.ttl", "1s",
                 env={"SCENARIO_API_SECRET": "not-the-right-secret"})
    expo = scrape_until(proc, lambda e: failures(e, "auth") == 1.0, "the auth failure")
    assert expo.value("scenario_up", account=ACCOUNT) == 0.0
    assert requests_with(expo, "401") == 1
    # Never any data: no business series, no window.
    assert business(expo) == {}
    assert proc.get("/-/ready").status_code == 200


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
    assert fake.request_count == 1


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


CONFIG_ERRORS = [
    pytest.param(["--cache.ttl", "soon"], None, "--cache.ttl", id="bad-duration"),
    pytest.param(["--period", "week"], None, "--period", id="bad-period"),
    pytest.param(["--period.anchor-day", "31"], None, "--period.anchor-day", id="anchor-day"),
    pytest.param([], {"SCENARIO_EXPORTER_LOG_LEVEL": "loud"}, "SCENARIO_EXPORTER_LOG_LEVEL",
                 id="bad-env"),
    pytest.param(["--no-such-flag"], None, "--no-such-flag", id="unknown-flag"),
    pytest.param([], {"SCENARIO_API_KEY": "", "SCENARIO_API_SECRET": ""}, "--demo",
                 id="no-credentials"),
]


@pytest.mark.parametrize("args, env, named", CONFIG_ERRORS)
def test_config_error_exits_2_with_one_line(processes: Processes, args: list[str],
                                            env: dict[str, str] | None, named: str) -> None:
    port = free_port()
    proc = processes.start(
        "--web.listen-address", f"127.0.0.1:{port}", *args,
        env={"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": API_SECRET, **(env or {})})
    assert proc.wait(20) == 2
    lines = proc.stderr_lines
    assert len(lines) == 1, lines
    assert named in lines[0]
    assert lines[0].startswith("scenario-exporter: ")
    assert proc.stdout_lines == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
