"""Shards and /probe targets in the chart: ``shards: N`` renders N Deployments running
``--shard=I/N`` with disjoint selectors, a PodDisruptionBudget and a ClusterIP Service per
shard (the Service of every pod stays, for the ServiceMonitor alone); ``scrapeConfig``
renders a Prometheus Operator ScrapeConfig reading each shard's ``/sd``, whose URLs the
exporter's own ``/sd`` answers with targets at that very address; the ServiceMonitor then
keeps only the exporter's own series. ``shards: 1`` renders what the chart always did.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from testkit.helm import (
    CASES,
    NAMESPACE,
    RELEASE,
    SCRAPE_CONFIG_SCHEMA,
    SHARD_LABEL,
    Manifest,
    RenderError,
    by_name,
    case_id,
    chart_yaml,
    ci_values,
    install_dry_run,
    job_command_line,
    of_kind,
    one,
    render,
    selects,
    write_pod_volumes,
)

FULLNAME = f"{RELEASE}-scenario-exporter"
SHARDED = ["demo=true", "shards=3", "replicaCount=2"]


def _args(deployment: Manifest) -> list[str]:
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def _pod_labels(deployment: Manifest) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _without_shard(deployment: Manifest) -> Manifest:
    """The Deployment with what distinguishes a shard taken out: its name, the shard label
    and the --shard flag."""
    copy: Manifest = json.loads(json.dumps(deployment))
    copy["metadata"]["name"] = "-"
    for labels in (copy["metadata"]["labels"], copy["spec"]["selector"]["matchLabels"],
                   copy["spec"]["template"]["metadata"]["labels"]):
        labels.pop(SHARD_LABEL, None)
    container = copy["spec"]["template"]["spec"]["containers"][0]
    container["args"] = [a for a in container["args"] if not a.startswith("--shard=")]
    return copy


# --- One shard: as before -----------------------------------------------------------------

@pytest.mark.parametrize("values", CASES, ids=case_id)
def test_one_shard_renders_what_the_chart_always_did(values: Path | None) -> None:
    objects = render(values)
    assert render(values, sets=["shards=1"]) == objects, "shards: 1 is the default"
    (deployment,) = of_kind(objects, "Deployment")
    assert deployment["metadata"]["name"] == FULLNAME
    assert not [a for a in _args(deployment) if a.startswith("--shard")]
    assert len(of_kind(objects, "Service")) == 1
    assert len(of_kind(objects, "PodDisruptionBudget")) <= 1
    assert not of_kind(objects, "ScrapeConfig")
    for obj in objects:
        assert SHARD_LABEL not in json.dumps(obj), f"{obj['kind']} names the shard label"


# --- Deployments, disruption budgets and Services of shards --------------------------------

def test_shards_render_one_deployment_each_with_its_flag_and_pods() -> None:
    deployments = of_kind(render(sets=SHARDED), "Deployment")
    assert [d["metadata"]["name"] for d in deployments] == [
        f"{FULLNAME}-shard-{i}" for i in range(3)]
    for index, deployment in enumerate(deployments):
        assert [a for a in _args(deployment) if a.startswith("--shard")] == [
            f"--shard={index}/3"]
        assert deployment["spec"]["replicas"] == 2, "replicaCount pods per shard"
        selector = deployment["spec"]["selector"]
        assert selector["matchLabels"][SHARD_LABEL] == str(index)
        assert selects(selector, _pod_labels(deployment))
        assert deployment["metadata"]["labels"][SHARD_LABEL] == str(index)
    # Disjoint: no Deployment's selector takes another shard's pods.
    for mine, other in itertools.permutations(deployments, 2):
        assert not selects(mine["spec"]["selector"], _pod_labels(other))
    # The same pod otherwise: image, config, Secrets, mounts, hardening.
    first = _without_shard(deployments[0])
    assert all(_without_shard(d) == first for d in deployments[1:])
    single = one(render(sets=["demo=true", "replicaCount=2"]), "Deployment")
    assert _without_shard(single) == first


def test_one_disruption_budget_per_shard_selecting_its_pods_only() -> None:
    objects = render(sets=[*SHARDED, "podDisruptionBudget.enabled=true",
                           "podDisruptionBudget.minAvailable=1"])
    deployments = by_name(objects, "Deployment")
    budgets = by_name(objects, "PodDisruptionBudget")
    assert list(budgets) == list(deployments)
    for name, budget in budgets.items():
        assert budget["spec"]["minAvailable"] == 1
        assert budget["spec"]["selector"] == deployments[name]["spec"]["selector"]
        assert [n for n, d in deployments.items()
                if selects(budget["spec"]["selector"], _pod_labels(d))] == [name]
    default = render(sets=[*SHARDED, "podDisruptionBudget.enabled=true"])
    assert {b["spec"]["maxUnavailable"] for b in of_kind(default, "PodDisruptionBudget")} == {1}


def test_a_service_per_shard_and_one_of_every_pod_for_the_service_monitor() -> None:
    objects = render(sets=[*SHARDED, "serviceMonitor.enabled=true"])
    deployments = by_name(objects, "Deployment")
    services = by_name(objects, "Service")
    assert list(services) == [FULLNAME, *deployments]
    for name, service in services.items():
        selector = {"matchLabels": service["spec"]["selector"]}
        picked = [n for n, d in deployments.items() if selects(selector, _pod_labels(d))]
        ports = service["spec"]["ports"]
        assert [(p["name"], p["port"], p["targetPort"]) for p in ports] == [
            ("http-metrics", 10097, "http-metrics")]
        if name == FULLNAME:
            assert picked == list(deployments), "the chart's Service selects every pod"
            assert "sessionAffinity" not in service["spec"]
        else:
            assert picked == [name], f"{name} selects its own shard's pods"
            assert service["spec"]["type"] == "ClusterIP"
            assert "clusterIP" not in service["spec"], "not headless"
            assert service["spec"]["sessionAffinity"] == "ClientIP"
    # The ServiceMonitor takes the Service of every pod, not the shards' ones: each pod is
    # one target, scraped once.
    monitor = one(objects, "ServiceMonitor")
    assert [n for n, s in services.items()
            if selects(monitor["spec"]["selector"], s["metadata"]["labels"])] == [FULLNAME]
    none = render(sets=[*SHARDED, "service.sessionAffinity=None"])
    assert {s["spec"]["sessionAffinity"] for s in of_kind(none, "Service")[1:]} == {"None"}


def test_long_names_stay_dns_labels() -> None:
    long = "x" * 63
    names = [o["metadata"]["name"] for o in render(sets=[
        "demo=true", "shards=12", f"fullnameOverride={long}",
        "podDisruptionBudget.enabled=true"]) if o["kind"] != "ServiceAccount"]
    suffixes = [f"-shard-{i}" for i in range(12)]
    assert set(names) == {long, *(long[:63 - len(s)] + s for s in suffixes)}
    assert all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n) for n in names), names


def _kube_versions() -> list[str]:
    oldest = re.search(r">=\s*v?(\d+\.\d+)", chart_yaml()["kubeVersion"])
    assert oldest, "Chart.yaml's kubeVersion has no lower bound"
    return [oldest.group(1), ".".join(kubernetes_validate.latest_version().split(".")[:2])]


@pytest.mark.parametrize("kube_version", _kube_versions())
def test_sharded_objects_are_valid(kube_version: str) -> None:
    objects = render(ci_values("everything-on"), sets=[
        "shards=3", "podDisruptionBudget.enabled=true", "scrapeConfig.enabled=true",
        "scrapeConfig.basicAuth.username.name=scrape",
        "scrapeConfig.basicAuth.username.key=username",
        "scrapeConfig.basicAuth.password.name=scrape",
        "scrapeConfig.basicAuth.password.key=password"])
    assert len(of_kind(objects, "Deployment")) == 3
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} is invalid for Kubernetes "
                        f"{kube_version}: {exc.message} at "
                        f"{'/'.join(str(p) for p in exc.absolute_path)}")
    _check_scrape_config(one(objects, "ScrapeConfig"))


# --- The ScrapeConfig ------------------------------------------------------------------------

def _check_scrape_config(obj: Manifest) -> None:
    errors = sorted(jsonschema.Draft7Validator(SCRAPE_CONFIG_SCHEMA).iter_errors(obj), key=str)
    assert not errors, "ScrapeConfig: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_scrape_config_reads_each_shards_sd() -> None:
    objects = render(sets=[*SHARDED, "scrapeConfig.enabled=true",
                           "scrapeConfig.labels.release=kube-prometheus-stack"])
    config = one(objects, "ScrapeConfig")
    _check_scrape_config(config)
    spec = config["spec"]
    assert config["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    urls = [s["url"] for s in spec["httpSDConfigs"]]
    assert urls == [f"http://{FULLNAME}-shard-{i}.{NAMESPACE}.svc:10097/sd" for i in range(3)]
    services = by_name(objects, "Service")
    for url in urls:
        host, _, port = urlsplit(url).netloc.partition(":")
        name, namespace, svc = host.split(".")
        assert (namespace, svc) == (NAMESPACE, "svc") and name in services
        assert int(port) in [p["port"] for p in services[name]["spec"]["ports"]]
    assert spec["scheme"] == "HTTP"
    assert (spec["scrapeInterval"], spec["scrapeTimeout"]) == ("60s", "30s")
    assert spec["honorLabels"] is True, "the series' account label, not exported_account"
    assert spec["relabelings"] == [
        {"targetLabel": "job", "replacement": FULLNAME},
        {"targetLabel": "namespace", "replacement": NAMESPACE},
        {"sourceLabels": ["__param_account"], "targetLabel": "__tmp_hash"}]
    # Without shards: the chart's one Service, which then keeps a Prometheus on one replica.
    single = render(sets=["demo=true", "replicaCount=2", "scrapeConfig.enabled=true"])
    (sd,) = one(single, "ScrapeConfig")["spec"]["httpSDConfigs"]
    assert sd["url"] == f"http://{FULLNAME}.{NAMESPACE}.svc:10097/sd"
    assert one(single, "Service")["spec"]["sessionAffinity"] == "ClientIP"


def test_scrape_config_user_relabelings_come_after_the_charts() -> None:
    spec = one(render(sets=[*SHARDED, "scrapeConfig.enabled=true",
                            "scrapeConfig.relabelings[0].targetLabel=team",
                            "scrapeConfig.relabelings[0].replacement=finops",
                            "scrapeConfig.metricRelabelings[0].action=drop",
                            "scrapeConfig.metricRelabelings[0].regex=scenario_user_info",
                            "scrapeConfig.metricRelabelings[0].sourceLabels[0]=__name__",
                            "scrapeConfig.scrapeInterval=", "scrapeConfig.refreshInterval=2m"]),
                   "ScrapeConfig")["spec"]
    assert spec["relabelings"][-1] == {"targetLabel": "team", "replacement": "finops"}
    assert spec["metricRelabelings"][0]["regex"] == "scenario_user_info"
    assert "scrapeInterval" not in spec and "scrapeTimeout" not in spec
    assert {s["refreshInterval"] for s in spec["httpSDConfigs"]} == {"2m"}


def test_scrape_config_with_tls_and_basic_auth() -> None:
    sets = [*SHARDED, "scrapeConfig.enabled=true", "web.tls.enabled=true",
            "web.tls.secretName=exporter-tls", "web.healthWithoutAuth=true",
            "web.config.basic_auth_users.prometheus=$2b$10$abcdefghijklmnopqrstuv"]
    with pytest.raises(RenderError, match="scrapeConfig.basicAuth: web.config has "
                                          "basic_auth_users"):
        render(sets=sets)
    auth = {"username": {"name": "scrape", "key": "username"},
            "password": {"name": "scrape", "key": "password"}}
    sets += [f"scrapeConfig.basicAuth.{field}.{key}={value}"
             for field, ref in auth.items() for key, value in ref.items()]
    config = one(render(sets=sets), "ScrapeConfig")
    _check_scrape_config(config)
    tls = {"serverName": f"{FULLNAME}.{NAMESPACE}.svc",
           "ca": {"secret": {"name": "exporter-tls", "key": "ca.crt"}}}
    spec = config["spec"]
    assert spec["scheme"] == "HTTPS"
    assert (spec["tlsConfig"], spec["basicAuth"]) == (tls, auth)
    for sd in spec["httpSDConfigs"]:
        assert sd["url"].startswith("https://")
        assert (sd["tlsConfig"], sd["basicAuth"]) == (tls, auth), "/sd wants them too"
    # In another namespace the Operator cannot read the TLS Secret: refused, with a fix.
    with pytest.raises(RenderError, match="scrapeConfig.tlsConfig: the ScrapeConfig in "
                                          "namespace prometheus cannot read Secrets"):
        render(sets=[*sets, "scrapeConfig.namespace=prometheus"])


def test_scrape_config_schema_catches_mistakes() -> None:
    config = one(render(sets=[*SHARDED, "scrapeConfig.enabled=true"]), "ScrapeConfig")
    _check_scrape_config(config)
    for path, value, where in (
            (("spec", "httpSDConfig"), [], "httpSDConfig"),
            (("spec", "httpSDConfigs", 0, "url"), "svc:10097/sd", "url"),
            (("spec", "scheme"), "http", "scheme"),
            (("spec", "relabelings", 0, "action"), "Rename", "action")):
        broken: Any = json.loads(json.dumps(config))
        node = broken
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(AssertionError, match=where):
            _check_scrape_config(broken)


def test_service_monitor_keeps_only_the_exporters_own_series_beside_the_scrape_config(
        ) -> None:
    """/metrics has the accounts' series and the exporter's own; /probe the accounts' only.
    The ServiceMonitor's first rule keeps exactly what /probe lacks, per the exporter."""
    sets = ["demo=true", "serviceMonitor.enabled=true",
            "serviceMonitor.metricRelabelings[0].action=labeldrop",
            "serviceMonitor.metricRelabelings[0].regex=python_version"]
    (endpoint,) = one(render(sets=sets), "ServiceMonitor")["spec"]["endpoints"]
    assert [r["action"] for r in endpoint["metricRelabelings"]] == ["labeldrop"]
    (endpoint,) = one(render(sets=[*sets, "scrapeConfig.enabled=true", "shards=2"]),
                      "ServiceMonitor")["spec"]["endpoints"]
    keep, mine = endpoint["metricRelabelings"]
    assert mine["action"] == "labeldrop", "the user's rules come after the chart's"
    assert (keep["action"], keep["sourceLabels"]) == ("keep", ["__name__"])
    own, shared = _metrics_and_probe_families()
    assert own and shared
    pattern = re.compile(keep["regex"])  # Prometheus anchors relabel regexes
    assert [n for n in own if not pattern.fullmatch(n)] == []
    assert [n for n in shared if pattern.fullmatch(n)] == []


def _metrics_and_probe_families() -> tuple[list[str], list[str]]:
    """The sample names of the demo exporter's /metrics that its /probe lacks, and those of
    its /probe."""
    from exporter.config.accounts import DEMO_API_KEY, DEMO_API_SECRET
    from exporter.config.load import build_settings
    from exporter.live.app import create_app
    from exporter.live.service import build_exporter
    from exporter.upstream.demo import DemoAccount
    from exporter.upstream.demo_api import demo_transport
    from testkit.web import call

    settings = build_settings({"demo": True, "period": "month"}, {}, None)
    exporter = build_exporter(settings, transport=demo_transport(
        DemoAccount(models=2, users=2), DEMO_API_KEY, DEMO_API_SECRET),
        spawn=lambda work: work())
    app = create_app(exporter)
    (account,) = exporter.probes

    def names(path: str) -> set[str]:
        body = call(app, path)[2].decode()
        return {line.split("{")[0].split(" ")[0] for line in body.splitlines()
                if line and not line.startswith("#")}

    metrics, probe = names("/metrics"), names(f"/probe?account={account}")
    return sorted(metrics - probe), sorted(probe)


# --- Chart and exporter agree --------------------------------------------------------------

ACCOUNTS = [f"studio-{n:02d}" for n in range(12)]


def test_each_shards_sd_lists_its_accounts_at_the_address_prometheus_asks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each rendered Deployment, run through the exporter's own parser, owns the accounts
    that hash to its shard; asked at the ScrapeConfig's URL of its Service, its /sd lists
    them at that address. Together the shards list every account once."""
    from exporter.cli.main import parse
    from exporter.core.shard import shard_of
    from exporter.live.app import create_app
    from exporter.live.service import build_exporter
    from testkit.web import call

    assert {shard_of(a, 3) for a in ACCOUNTS} == {0, 1, 2}, "every shard owns an account"
    values = tmp_path / "accounts-values.yaml"
    values.write_text(yaml.safe_dump({"accounts": [
        {"name": a, "apiKey": f"key-{a}", "apiSecret": f"secret-{a}"} for a in ACCOUNTS]}))
    objects = render(values, sets=["shards=3", "scrapeConfig.enabled=true"])
    urls = [s["url"] for s in one(objects, "ScrapeConfig")["spec"]["httpSDConfigs"]]
    for name in [n for n in os.environ if n.startswith("SCENARIO")]:
        monkeypatch.delenv(name)
    listed: list[str] = []
    for index, (deployment, url) in enumerate(zip(of_kind(objects, "Deployment"), urls,
                                                  strict=True)):
        assert urlsplit(url).hostname == f"{deployment['metadata']['name']}.{NAMESPACE}.svc"
        files = write_pod_volumes(deployment, tmp_path / str(index), objects=objects)
        argv, env = job_command_line(deployment, files, objects=objects)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = parse(argv[3:]).settings
        assert str(settings.shard) == f"{index}/3"
        exporter = build_exporter(settings, spawn=lambda work: None)  # nothing refreshed
        address = urlsplit(url).netloc
        status, _, body = call(create_app(exporter), urlsplit(url).path,
                               headers={"Host": address})
        assert status == "200 OK"
        groups = json.loads(body)
        assert {t for g in groups for t in g["targets"]} == {address}
        accounts = [g["labels"]["__param_account"] for g in groups]
        assert accounts == [a for a in ACCOUNTS if shard_of(a, 3) == index]
        listed += accounts
    assert sorted(listed) == ACCOUNTS


# --- Refused values and the install notes ----------------------------------------------------

@pytest.mark.parametrize("override", [
    pytest.param({"shards": 0}, id="no-shard"),
    pytest.param({"shards": "3"}, id="string-for-shards"),
    pytest.param({"shards": 1.5}, id="fraction"),
    pytest.param({"service": {"sessionAffinity": "Sticky"}}, id="bad-affinity"),
    pytest.param({"scrapeConfig": {"enabeld": True}}, id="typo-scrape-config"),
    pytest.param({"scrapeConfig": {"scrapeInterval": "1 minute"}}, id="bad-interval"),
])
def test_schema_rejects_bad_shard_values(override: dict[str, Any], tmp_path: Path) -> None:
    values = tmp_path / "bad-values.yaml"
    values.write_text(yaml.safe_dump(override))
    with pytest.raises(RenderError, match="schema"):
        render(values, sets=["demo=true"])


@pytest.mark.parametrize("sets", [
    pytest.param(["extraArgs[0]=--shard=0/2"], id="shard-flag"),
    pytest.param(["extraArgs[0]=--web.external-address=x:1"], id="external-address-flag"),
    pytest.param(["config.web.external-address=x:1"], id="external-address-config"),
    pytest.param(["config.shard=0/2"], id="shard-config"),
])
def test_values_contradicting_shards_are_refused(sets: list[str]) -> None:
    render(sets=["demo=true", *sets])  # without shards, the chart leaves them to you
    with pytest.raises(RenderError, match="contradicts? shards=2"):
        render(sets=["demo=true", "shards=2", *sets])


def test_install_notes_name_a_shards_deployment_and_sd() -> None:
    notes = install_dry_run(["demo=true", "shards=2", "scrapeConfig.enabled=true"])
    notes = notes[notes.index("NOTES:"):]
    assert f"exec deploy/{FULLNAME}-shard-0 -- scenario-exporter check" in notes
    assert f"service/{FULLNAME}-shard-0" in notes and "/sd" in notes
    assert "scrapeConfigSelector" in notes
    single = install_dry_run(["demo=true"])
    assert f"exec deploy/{FULLNAME} -- scenario-exporter check" in single
    assert "/sd" not in single[single.index("NOTES:"):]
