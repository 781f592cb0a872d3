"""Two exporter shards over one configuration of 20 accounts, and two Prometheus
servers that split the ``/sd`` targets with ``hashmod``.

Each shard calls a loopback fake of its own, so that every upstream call can be
traced to the shard that made it; each account reads with a project id of its own
(``projectIds``), so that every call can be traced to its account.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from exporter.core.shard import shard_of
from exporter.upstream.demo import DemoAccount
from testkit.dashboards import panel_queries, substitute
from testkit.fake_upstream import FakeUpstream
from testkit.processes import ExporterProcess, Processes, free_port
from testkit.prometheus import (
    BUILDS,
    Prometheus,
    require_build,
    start_prometheus,
)
from testkit.repo import REPO_ROOT
from testkit.waiting import wait_for

ACCOUNTS = [f"studio-{n:02d}" for n in range(20)]
SHARDS = 2
RECORDED = "account:scenario_model_cost_creative_units:period_to_date"


@dataclass
class Fleet:
    fakes: list[FakeUpstream]
    shards: list[ExporterProcess]
    tmp: Path


def owned(index: int) -> set[str]:
    return {a for a in ACCOUNTS if shard_of(a, SHARDS) == index}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("shards")
    fakes = [FakeUpstream(DemoAccount(models=3, users=2)).start() for _ in range(SHARDS)]
    try:
        with Processes() as processes:
            shards = []
            for index, fake in enumerate(fakes):
                config = tmp / f"shard-{index}.yml"
                config.write_text(yaml.safe_dump({
                    "scenario": {"api-url": fake.url}, "period": "month",
                    "accounts": [{"name": name, "api_key": "test-key",
                                  "api_secret": "test-secret-value",
                                  "project_ids": [f"proj-{name}"]} for name in ACCOUNTS]}),
                    encoding="utf-8")
                shards.append(processes.start(
                    f"--config.file={config}", f"--shard={index}/{SHARDS}",
                    f"--web.listen-address=127.0.0.1:{free_port()}", "--cache.ttl=5s"))
            for shard in shards:
                wait_for(lambda s=shard: s.get("/-/ready").status_code == 200, 30,  # type: ignore[misc]
                         "the shard's first refreshes", shard.tail)
            yield Fleet(fakes, shards, tmp)
    finally:
        for fake in fakes:
            fake.stop()


def test_each_account_is_refreshed_and_served_by_its_shard_alone(fleet: Fleet) -> None:
    for index, (fake, shard) in enumerate(zip(fleet.fakes, fleet.shards, strict=True)):
        called = {r.params["projectIds"].removeprefix("proj-") for r in fake.state.requests
                  if r.path.endswith("/usages")}
        assert called == owned(index), index
        assert set(shard.metrics().by_label("scenario_up", "account")) == owned(index)
    assert owned(0).isdisjoint(owned(1)) and owned(0) | owned(1) == set(ACCOUNTS)


def test_sd_and_probe_agree_with_ownership(fleet: Fleet) -> None:
    for index, shard in enumerate(fleet.shards):
        groups = shard.get("/sd").json()
        assert {g["labels"]["account"] for g in groups} == owned(index)
        assert {t for g in groups for t in g["targets"]} == {f"127.0.0.1:{shard.port}"}
        for account in ACCOUNTS:
            response = shard.get(f"/probe?account={account}")
            if account in owned(index):
                assert response.status_code == 200
                assert f'scenario_up{{account="{account}"}} 1.0' in response.text
            else:
                assert response.status_code == 404
                assert response.text == (f"account {account} belongs to shard "
                                         f"{1 - index}/{SHARDS}; this exporter serves "
                                         f"shard {index}/{SHARDS}\n")


def _prometheus_config(fleet: Fleet, keep: int) -> dict[str, object]:
    rules = REPO_ROOT / "rules" / "scenario-recording.rules.yml"
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{
            "job_name": "scenario-exporter",
            # The series carry account themselves: the target's account is the same.
            "honor_labels": True,
            "http_sd_configs": [{"url": f"{shard.url}/sd", "refresh_interval": "5s"}
                                for shard in fleet.shards],
            # Prometheus sharding: each server keeps the accounts whose hash is its own.
            "relabel_configs": [
                {"source_labels": ["__param_account"], "modulus": SHARDS,
                 "target_label": "__tmp_hash", "action": "hashmod"},
                {"source_labels": ["__tmp_hash"], "regex": str(keep), "action": "keep"}],
        }, {
            # The exporter's own series from /metrics, under the same job, as the chart's
            # ServiceMonitor scrapes them beside its ScrapeConfig's /probe targets: at
            # another address of the process (the pod's, where /sd gives the Service's).
            "job_name": "scenario-exporter-own",
            "static_configs": [{"targets": [f"localhost:{shard.port}"
                                            for shard in fleet.shards]}],
            "relabel_configs": [{"target_label": "job", "replacement": "scenario-exporter"}],
            "metric_relabel_configs": [{"source_labels": ["__name__"],
                                        "regex": "scenario_exporter_.*", "action": "keep"}],
        }],
    }


@pytest.mark.parametrize("build", BUILDS)
def test_two_prometheus_servers_hold_disjoint_halves_and_each_figure_once(
        fleet: Fleet, build: object, tmp_path: Path) -> None:
    found = require_build(build)  # type: ignore[arg-type]
    with Processes() as processes:
        servers: list[Prometheus] = [
            start_prometheus(found, processes, f"hashmod-{keep}", _prometheus_config(fleet, keep),
                             tmp_path / f"data-{keep}") for keep in range(SHARDS)]

        def accounts(server: Prometheus, expr: str) -> list[str]:
            return sorted(s["metric"]["account"] for s in server.query(expr))

        def probes(server: Prometheus) -> int:
            return sum(1 for t in server.api("targets")["activeTargets"]
                       if t["scrapePool"] == "scenario-exporter")

        for server in servers:  # every target discovered, scraped, and its rule evaluated
            wait_for(lambda s=server: (  # type: ignore[misc]
                probes(s) > 0
                and accounts(s, "scenario_up == 1") == accounts(s, RECORDED)
                and len(accounts(s, RECORDED)) == probes(s)),
                60, "the server's scrapes and rules", server.process.tail)
        held = [accounts(server, "scenario_up") for server in servers]
        assert set(held[0]).isdisjoint(held[1])
        assert sorted(held[0] + held[1]) == ACCOUNTS
        # The recording rules: each account's figure exactly once over the two servers.
        figures = [s["metric"]["account"] for server in servers for s in server.query(RECORDED)]
        assert sorted(figures) == ACCOUNTS
        assert not [s for server in servers for s in server.query("{exported_account!=\"\"}")]
        for server in servers:
            for sample in server.query(RECORDED):
                assert math.isfinite(float(sample["value"][1])) and \
                    float(sample["value"][1]) > 0, sample
            # The exporter dashboard finds the processes serving the accounts it shows.
            for panel in ("Exporter version", "Scrape duration"):
                (query,) = [q for q in panel_queries()
                            if q.dashboard == "scenario-exporter" and q.panel == panel]
                expr = substitute(query.expr, ACCOUNTS)
                wait_for(lambda s=server, e=expr: s.query(e),  # type: ignore[misc]
                         30, f"{query}: data", server.process.tail)
