"""Prometheus 2 and Prometheus 3, each with its default scrape configuration, ingest the
same series and values from the exporter.

Both ask for OpenMetrics first (Prometheus 2 in its fixed Accept header, Prometheus 3
through its default ``scrape_protocols``), so both get each counter's ``_created``,
which the Prometheus text format leaves out. One exporter, whose upstream names a
model and a user with quotes, a backslash, a line break and non-ASCII letters, is
scraped by one server of each major, as a job of everything and as a job that asks
for a few samples with ``name[]``. With a one-hour cache the exporter serves the
same values all along, so the servers can be compared at any instant, exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from exporter.upstream.demo import DemoAccount
from testkit.fake_upstream import FakeUpstream
from testkit.processes import Processes, free_port
from testkit.prometheus import BUILDS, START_TIMEOUT, Prometheus, require_build, start_prometheus
from testkit.waiting import wait_for

API_KEY, API_SECRET = "protocol-key", "protocol-secret-value"
MODEL_NAME = 'Say "cheese" \\ to the\nÎle-de-France 東京 model ✓'
USER_NAME = 'Zoë "Z" O\\Brien\nof Kraków'
# name[] names samples, as prometheus_client's own handler does (docs/security.md):
# a counter's _created comes only when it is asked for too.
FILTERED = ("scenario_model_cost_creative_units_total",
            "scenario_model_cost_creative_units_created", "scenario_model_info", "scenario_up")
SCRAPES = 3
# Series whose value changes from one scrape to the next (the process's own
# figures): compared by name and labels only.
MOVING = ("process_", "python_", "scenario_exporter_")


@dataclass
class Servers:
    account: DemoAccount
    by_major: dict[int, Prometheus]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    builds = [require_build(param.values[0]) for param in BUILDS]
    tmp = tmp_path_factory.mktemp("scrape-protocols")
    account = DemoAccount(models=6, users=3, api_keys=1)
    with FakeUpstream(account, API_KEY, API_SECRET) as fake, Processes() as processes:
        fake.state.names = {account.model_list[0].id: MODEL_NAME,
                            account.user_list[0].id: USER_NAME}
        address = f"127.0.0.1:{free_port()}"
        exporter = processes.start(
            "--web.listen-address", address, "--scenario.api-url", fake.url,
            "--cache.ttl", "1h", "--metrics.user-identity", "--log.level", "warning",
            env={"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": API_SECRET},
            port=int(address.rpartition(":")[2]))
        exporter.wait_ready(timeout=START_TIMEOUT, interval=0.1)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {"job_name": "all", "static_configs": [{"targets": [address]}]},
                {"job_name": "filtered", "params": {"name[]": list(FILTERED)},
                 "static_configs": [{"targets": [address]}]},
            ],
        }
        by_major = {build.major: start_prometheus(build, processes, "defaults", config,
                                                  tmp / f"data-{build.major}")
                    for build in builds}

        def scraped() -> bool:
            return all(_count(server, f'count_over_time(up{{job="{job}"}}[1m]) >= {SCRAPES}')
                       == 1 for server in by_major.values() for job in ("all", "filtered"))

        wait_for(scraped, START_TIMEOUT, f"{SCRAPES} scrapes of each job by each server",
                 lambda: "\n".join(s.process.tail() for s in by_major.values()), interval=0.2)
        yield Servers(account, by_major)


def _count(server: Prometheus, expr: str) -> int:
    return len(server.query(expr))


Series = dict[frozenset[tuple[str, str]], float]


def series(server: Prometheus, job: str) -> Series:
    """Every series of *job* that the exporter serves, at the server's latest scrape."""
    result = server.query(f'{{job="{job}", __name__!~"up|scrape_.*"}}')
    return {frozenset(sample["metric"].items()): float(sample["value"][1]) for sample in result}


def stable(found: Series) -> Series:
    return {labels: value for labels, value in found.items()
            if not dict(labels)["__name__"].startswith(MOVING)}


@pytest.mark.parametrize("job", ["all", "filtered"])
def test_both_majors_ingest_the_same_series_and_values(servers: Servers, job: str) -> None:
    two, three = (series(servers.by_major[major], job) for major in (2, 3))
    assert two.keys() == three.keys(), (
        f"only Prometheus 2: {sorted(map(sorted, two.keys() - three.keys()))[:5]}\n"
        f"only Prometheus 3: {sorted(map(sorted, three.keys() - two.keys()))[:5]}")
    assert stable(two) == stable(three)
    assert len(stable(two)) >= 10


def test_both_negotiate_openmetrics_and_get_each_counters_created(servers: Servers) -> None:
    """``_created`` (the period start) is only in OpenMetrics: each counter has one."""
    for major, server in servers.by_major.items():
        found = series(server, "all")
        names = {dict(labels)["__name__"] for labels in found}
        start = {value for labels, value in found.items()
                 if dict(labels)["__name__"] == "scenario_period_start_timestamp_seconds"}
        counters = {name for name in names
                    if name.startswith("scenario_") and name.endswith("_total")
                    and not name.startswith("scenario_exporter_")}
        assert len(counters) >= 10, major
        for counter in counters:
            created = f"{counter.removesuffix('_total')}_created"
            assert created in names, f"Prometheus {major}: no {created}"
            values = {value for labels, value in found.items()
                      if dict(labels)["__name__"] == created}
            assert values == start, f"Prometheus {major}: {created} {values}, start {start}"


def test_label_values_arrive_unescaped(servers: Servers) -> None:
    """Quotes, backslashes, line breaks and non-ASCII letters survive the exposition's
    escaping on both majors, as upstream sent them."""
    for major, server in servers.by_major.items():
        models = {s["metric"]["model_name"] for s in server.query(
            'scenario_model_info{job="all"}')}
        users = {s["metric"].get("user_name") for s in server.query(
            'scenario_user_info{job="all"}')}
        assert MODEL_NAME in models, f"Prometheus {major}: {models}"
        assert USER_NAME in users, f"Prometheus {major}: {users}"


def test_the_name_filter_serves_the_families_asked_for(servers: Servers) -> None:
    everything = series(servers.by_major[3], "all")
    for major, server in servers.by_major.items():
        found = series(server, "filtered")
        names = {dict(labels)["__name__"] for labels in found}
        assert names == set(FILTERED), major
        # The same series and values as the job of everything, but for the job label.
        for labels, value in found.items():
            assert everything[frozenset({**dict(labels), "job": "all"}.items())] == value
