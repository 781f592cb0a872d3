"""The real ``scenario-exporter`` process against the loopback fake: every value it
serves equals upstream's sums, and many scrapes cost one upstream call.

Every test starts ``python -m exporter`` on a free port (``127.0.0.1:0``, the
port read from the ``listening`` log line) with credentials in the environment,
pointed at :class:`FakeUpstream`. Truth comes from the fake's
:class:`DemoAccount`, whose totals over any window are exact, so exported values
are compared with ``==``, not approximately. Upstream faults and staleness are in
``test_upstream_faults.py``, the HTTP surface and SIGTERM in ``test_http_surface.py``.
"""

from __future__ import annotations

import json
import platform
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import httpx
import pytest

from exporter import __version__
from exporter.core.period import parse_iso
from exporter.metrics.counters import COUNTERS
from exporter.upstream.demo import DemoAccount
from testkit.exposition import Exposition
from testkit.fake_upstream import FakeUpstream
from testkit.oracle import model_totals
from testkit.processes import Processes
from testkit.served import (
    ACCOUNT,
    API_KEY,
    API_SECRET,
    MODEL_COUNTERS,
    REASONS,
    business,
    failures,
    is_up,
    requests_with,
    scrape_until,
    served_window,
    start,
    team_calls,
    withdrawable,
)
from testkit.waiting import wait_for
from testkit.web import basic_authorization

SECTIONS = {"usages", "consumption", "model-usages", "asset-usages", "nsfw-usages",
            "quality-gate-usages"}
# (response section, id field) -> (counter of the first number, counter of the second, label)
COUNT_SECTIONS = {
    ("assetUsages", "kind"): ("scenario_assets_created_total",
                              "scenario_assets_created_by_api_key_total", "kind"),
    ("nsfwUsages", "label"): ("scenario_nsfw_assets_total",
                              "scenario_nsfw_assets_by_api_key_total", "label"),
    ("qualityGateUsages", "verdict"): ("scenario_quality_gate_assets_total",
                                       "scenario_quality_gate_assets_by_api_key_total",
                                       "verdict"),
}
# Counter of a usage name's CU -> (point field, sign: the cost or the credit side, magnitude?)
USAGE_CU = {
    "scenario_usage_cost_creative_units_total": ("cost", 1.0),
    "scenario_usage_credit_creative_units_total": ("cost", -1.0),
    "scenario_usage_cost_by_api_key_creative_units_total": ("apiKeyCost", 1.0),
    "scenario_usage_credit_by_api_key_creative_units_total": ("apiKeyCost", -1.0),
    "scenario_usage_discount_creative_units_total": ("discount", 0.0),
    "scenario_usage_discount_by_api_key_creative_units_total": ("apiKeyDiscount", 0.0),
}

# (sample, its id label, or labels joined by ",") -> {id (a tuple for several): value}
Expected = dict[tuple[str, str], dict[Any, float]]


# -- truth -----------------------------------------------------------------------------


def to_millis(when: datetime) -> datetime:
    """What upstream sees of a moment: the client sends ISO 8601 with milliseconds."""
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def iso_millis(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


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
    priced = [r for r in body["usages"] if any("cost" in p for p in r["points"])]
    for sample, (field, side) in USAGE_CU.items():
        sums = {r["usageName"]: sum(float(p[field]) for p in r["points"]) for r in priced}
        # the cost side while the period's sum is >= 0, the credit side its magnitude
        expected[(sample, "usage_name")] = {
            name: abs(total) if side == 0.0 else max(side * total, 0.0)
            for name, total in sums.items()}
    if with_users:
        # Consumption rows are per-window figures rounded by upstream: two halves of a
        # window do not add up to the rounded whole, so only a one-request window has them.
        expected[("scenario_user_consumption_creative_units_total", "user_id")] = {
            r["userId"]: float(r["value"]) for r in body["consumption"]}
        expected[("scenario_user_discount_creative_units_total", "user_id")] = {
            r["userId"]: abs(float(r["discount"])) for r in body["consumption"]}
        expected[("scenario_user_consumption_by_action_creative_units_total",
                  "user_id,action")] = {
            (r["userId"], action): float(cost) for r in body["consumption"]
            if isinstance(r.get("costDetails"), dict)
            for action, cost in r["costDetails"].items()}
    return expected


# Every business counter the exporter serves: each must be held against upstream's sums.
SERVED_COUNTERS = {f"{spec.name}_total" for spec in COUNTERS}


def assert_served(expo: Exposition, expected: Expected) -> None:
    for (sample, label), values in expected.items():
        labels = tuple(label.split(","))
        served: dict[Any, float] = expo.by_labels(sample, labels, account=ACCOUNT)
        if len(labels) == 1:
            served = {key[0]: value for key, value in served.items()}
        assert served == values, f"{sample} differs from upstream's sums"


def window_seconds(request: Any) -> float:
    return (parse_iso(request.params["endDate"])
            - parse_iso(request.params["startDate"])).total_seconds()


# -- values --------------------------------------------------------------------------


def test_by_default_the_counters_run_over_the_teams_billing_period(
        processes: Processes, fake: FakeUpstream) -> None:
    proc = start(processes, fake, "--cache.ttl", "1h")  # --period=auto
    expo = scrape_until(proc, is_up, "the first refresh to succeed")
    limits = httpx.get(f"{fake.url}/teams/team_demo/limits", headers={
        "Authorization": basic_authorization(API_KEY, API_SECRET)}).json()
    start_at, _ = served_window(expo)
    assert start_at == parse_iso(limits["period"]["start"])
    assert expo.value("scenario_period_end_timestamp_seconds", account=ACCOUNT) == \
        parse_iso(limits["period"]["end"]).timestamp()
    (sent,) = [r for r in fake.state.requests if r.path == "/v1/usages"]
    assert sent.params["startDate"] == iso_millis(start_at)


def test_exposed_values_equal_upstream_sums(processes: Processes, fake: FakeUpstream) -> None:
    # The calendar month (the fake's billing period is tested in test_billing_period.py).
    proc = start(processes, fake, "--cache.ttl", "1h", "--budget.creative-units", "125000.5",
                 "--period=month")
    expo = scrape_until(proc, is_up, "the first refresh to succeed")
    start_at, as_of = served_window(expo)

    # The window is the calendar month so far, and it is what was asked upstream.
    assert start_at == as_of.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert fake.calls("usages") == 1
    (sent,) = [r for r in fake.state.requests if r.path == "/v1/usages"]
    assert sent.params["startDate"] == iso_millis(start_at)
    assert sent.params["endDate"] == iso_millis(as_of)
    assert set(sent.params["type"].split(",")) == SECTIONS
    assert sent.params["dropZeroPoints"] == "true"
    assert "projectIds" not in sent.params
    assert sent.authorization == basic_authorization(API_KEY, API_SECRET)

    account = fake.state.account
    end = to_millis(as_of)
    expected = expected_series(account, start_at, end)
    assert {name for name, _ in expected} == SERVED_COUNTERS  # every one of them
    assert_served(expo, expected)
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
    assert requests_with(expo, "200") == 1 + team_calls(fake)
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
    assert fake.calls("usages") == 1


@pytest.mark.parametrize("mode", ["oversized", "gateway-too-large"])
def test_too_large_windows_are_split_and_add_up(processes: Processes, fake: FakeUpstream,
                                                mode: str) -> None:
    # An anchor day about five days ago: a window long enough to split twice.
    target = datetime.now(timezone.utc) - timedelta(days=5)
    anchor = min(target.day, 28)
    fake.state.max_window_seconds = 2 * 86400.0
    fake.set_mode(mode)
    proc = start(processes, fake, "--cache.ttl", "1h", "--period=month",
                 "--period.anchor-day", str(anchor))
    expo = scrape_until(proc, is_up, "the split refresh to succeed")
    start_at, as_of = served_window(expo)
    assert start_at.day == anchor and timedelta(days=5) <= as_of - start_at <= timedelta(days=9)

    requests = [r for r in fake.state.requests if r.path == "/v1/usages"]
    refused = [r for r in requests if window_seconds(r) > fake.state.max_window_seconds]
    answered = [r for r in requests if window_seconds(r) <= fake.state.max_window_seconds]
    assert refused and len(answered) >= 3
    # The answered windows tile the whole period exactly: no gap, no overlap.
    tiles = sorted((r.params["startDate"], r.params["endDate"]) for r in answered)
    assert tiles[0][0] == iso_millis(start_at) and tiles[-1][1] == iso_millis(as_of)
    assert all(a[1] == b[0] for a, b in pairwise(tiles))

    refused_code = "413" if mode == "oversized" else "502"
    assert requests_with(expo, refused_code) == len(refused)
    assert requests_with(expo, "200") == len(answered) + team_calls(fake)
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
    expected[("scenario_quality_gate_assets_total", "verdict")]["needs-review"] = 2.0
    expected[("scenario_quality_gate_assets_by_api_key_total", "verdict")]["needs-review"] = 1.0
    # the first user's costDetails, not an object, is left out; the rest is served
    first_user = fake.state.account.response(start_at, to_millis(as_of))["consumption"][0]
    actions = expected[("scenario_user_consumption_by_action_creative_units_total",
                        "user_id,action")]
    for key in [key for key in actions if key[0] == first_user["userId"]]:
        del actions[key]
    assert_served(expo, expected)
    assert requests_with(expo, "200") == 1 + team_calls(fake)
    assert failures(expo, "invalid_response") == 0.0


# One series per section of the ledger, by the labels of its ids: each id counts once
# when it vanishes (a user's CU per action is an id of its own).
_ID_SERIES = {"scenario_model_cost_creative_units_total": ("model_id",),
              "scenario_assets_created_total": ("kind",), "scenario_nsfw_assets_total": ("label",),
              "scenario_usage_total": ("usage_name",),
              "scenario_quality_gate_assets_total": ("verdict",),
              "scenario_user_consumption_creative_units_total": ("user_id",),
              "scenario_user_consumption_by_action_creative_units_total": ("user_id", "action")}


def test_upstream_dropping_data_is_served_and_counted_once(processes: Processes,
                                                           fake: FakeUpstream) -> None:
    """Served as upstream says (a replica started now would serve the same), and each
    vanished id counts once, not at every refresh that follows."""
    proc = start(processes, fake, "--cache.ttl", "1s")
    before = scrape_until(proc, is_up, "the first refresh to succeed")
    ids = sum(len(before.by_labels(name, labels, account=ACCOUNT))
              for name, labels in _ID_SERIES.items())
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
    assert fake.calls("usages") == 1
    assert fake.state.max_in_flight == 1


def test_scrapes_during_a_refresh_are_answered_from_memory(processes: Processes,
                                                           fake: FakeUpstream) -> None:
    proc = start(processes, fake, "--cache.ttl", "1s")
    first = scrape_until(proc, is_up, "the first refresh to succeed")
    fake.state.slow_seconds = 3.0
    fake.set_mode("slow")
    # Past the TTL, a scrape starts one background refresh, which the fake holds.
    wait_for(lambda: proc.metrics() and fake.calls("usages") == 2, 10,
             "a refresh to start after the TTL", interval=0.05)
    responses = _concurrent_scrapes(proc.url)
    still_running = fake.state.in_flight == 1

    assert [r.status_code for r in responses] == [200] * 32
    assert still_running, "the scrapes waited for the refresh (stale-while-revalidate)"
    for response in responses:  # the data already held, at once
        assert business(Exposition.parse(response.text)) == business(first)
    assert fake.calls("usages") == 2
    assert fake.state.max_in_flight == 1
    newer = scrape_until(proc, lambda e: served_window(e)[1] > served_window(first)[1],
                         "the slow refresh to land")
    assert is_up(newer)

