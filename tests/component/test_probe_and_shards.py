"""``/probe?account=NAME``, ``/sd`` and ``--shard=I/N``, driven in-process.

Twenty accounts of the demo upstream (one key: each account reads the same data),
built as the server builds them, called through the WSGI application.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from exporter.config.accounts import DEMO_API_KEY, DEMO_API_SECRET
from exporter.config.load import build_settings
from exporter.core.shard import Shard, shard_of
from exporter.live.app import create_app
from exporter.live.exporter import UsageExporter
from exporter.live.service import build_exporter
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import demo_transport
from exporter.web.security import WebSecurity
from testkit.exposition import families
from testkit.web import call
from testkit.webconfig import bcrypt_hash, users, write_config

ACCOUNTS = [f"studio-{n:02d}" for n in range(20)]


def exporter(tmp_path: Path, **flags: str) -> UsageExporter:
    config = tmp_path / "accounts.yml"
    config.write_text("accounts:\n" + "".join(
        f"  - {{name: {name}, api_key: {DEMO_API_KEY}, api_secret: {DEMO_API_SECRET}}}\n"
        for name in ACCOUNTS), encoding="utf-8")
    settings = build_settings({"period": "month", **flags}, {}, config)
    return build_exporter(settings, transport=demo_transport(
        DemoAccount(models=3, users=2), DEMO_API_KEY, DEMO_API_SECRET),
        spawn=lambda work: work())


def test_a_probe_serves_one_accounts_series_and_metrics_keeps_the_exporters(
        tmp_path: Path) -> None:
    app = create_app(exporter(tmp_path))
    status, headers, body = call(app, "/probe?account=studio-07", headers={
        "Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"})
    assert status == "200 OK" and headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    probed = families(gzip.decompress(body).decode(), openmetrics=True)
    names = {f.name for f in probed}
    assert "scenario_up" in names and not any(n.startswith("scenario_exporter_") for n in names)
    assert {s.labels["account"] for f in probed for s in f.samples
            if "account" in s.labels} == {"studio-07"}
    # The same samples as the account's part of /metrics.
    _, _, whole = call(app, "/metrics")
    mine = sorted(line for line in whole.decode().splitlines()
                  if 'account="studio-07"' in line and not line.startswith("scenario_exporter_"))
    _, _, text = call(app, "/probe?account=studio-07")
    assert sorted(line for line in text.decode().splitlines() if not line.startswith("#")) \
        == mine
    # name[] as on /metrics.
    _, _, only = call(app, "/probe?account=studio-07&name[]=scenario_up")
    assert [line for line in only.decode().splitlines() if not line.startswith("#")] == \
        ['scenario_up{account="studio-07"} 1.0']


@pytest.mark.parametrize(("query", "message"), [
    ("", "/probe needs ?account=NAME, one of the accounts of /sd"),
    ("?account=nobody", "no account nobody in this exporter's configuration"),
])
def test_a_probe_of_an_unknown_account_is_one_line_404(tmp_path: Path, query: str,
                                                         message: str) -> None:
    status, _, body = call(create_app(exporter(tmp_path)), "/probe" + query)
    assert status == "404 Not Found" and body.decode() == message + "\n"


def test_sd_lists_every_account_as_a_probe_target_at_the_address_asked(tmp_path: Path) -> None:
    app = create_app(exporter(tmp_path))
    status, headers, body = call(app, "/sd", headers={"Host": "exporter-0.svc:10097"})
    assert status == "200 OK" and headers["Content-Type"] == "application/json"
    groups = json.loads(body)
    assert [g["labels"]["account"] for g in groups] == ACCOUNTS
    assert all(g["targets"] == ["exporter-0.svc:10097"] and g["labels"] == {
        "account": g["labels"]["account"], "__param_account": g["labels"]["account"],
        "__metrics_path__": "/probe"} for g in groups)
    external = create_app(exporter(tmp_path, **{"web.external-address": "scenario:443"}))
    groups = json.loads(call(external, "/sd", headers={"Host": "10.0.0.7:10097"})[2])
    assert {t for g in groups for t in g["targets"]} == {"scenario:443"}


def test_two_shards_split_the_accounts_disjointly_and_refuse_each_others(
        tmp_path: Path) -> None:
    shards = [exporter(tmp_path, shard=f"{i}/2") for i in range(2)]
    served = [{r.account.name for r in e.refreshers} for e in shards]
    assert served[0].isdisjoint(served[1]) and served[0] | served[1] == set(ACCOUNTS)
    assert all(served), "20 names hash to both shards"
    for index, one in enumerate(shards):
        app = create_app(one)
        listed = {g["labels"]["account"] for g in json.loads(call(app, "/sd")[2])}
        assert listed == served[index] == {a for a in ACCOUNTS if shard_of(a, 2) == index}
        other = next(iter(served[1 - index]))
        status, _, body = call(app, f"/probe?account={other}")
        assert status == "404 Not Found"
        assert body.decode() == (f"account {other} belongs to shard {1 - index}/2; this "
                                 f"exporter serves shard {index}/2\n")
        _, _, metrics = call(app, "/metrics")
        assert f'account="{other}"'.encode() not in metrics
        page = call(app, "/")[2].decode()
        assert f"Shard {index}/2 (--shard): {len(served[index])} of the 20 configured" in page


def test_the_shard_of_a_name_is_stable_and_spread() -> None:
    # Fixed by the hash's definition (first 8 bytes of SHA-256), not by the process or
    # the version: a change here moves accounts between running shards.
    names = ("studio", "mobile", "agency-1", "agency-2")
    assert [shard_of(name, 4) for name in names] == [1, 1, 0, 1]
    assert [shard_of(name, 10) for name in names] == [5, 3, 0, 3]
    assert shard_of("studio", 1) == 0
    counts = [0] * 10
    for n in range(10000):
        counts[shard_of(f"account-{n}", 10)] += 1
    assert min(counts) > 900 and max(counts) < 1100
    with pytest.raises(ValueError, match="I must be from 0 to N-1"):
        Shard.parse("2/2")
    with pytest.raises(ValueError, match="is not I/N"):
        Shard.parse("half")


def test_probe_and_sd_ask_for_the_same_credentials_as_metrics(tmp_path: Path) -> None:
    security = WebSecurity.from_file(str(write_config(tmp_path, users(
        alice=bcrypt_hash("pw")))))
    app = security.wrap(create_app(exporter(tmp_path)))
    for path in ("/metrics", "/probe?account=studio-03", "/sd"):
        assert call(app, path)[0].startswith("401"), path
        assert call(app, path, auth=("alice", "pw"))[0] == "200 OK", path
