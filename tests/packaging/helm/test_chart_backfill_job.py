"""The backfill Job (``backfill.enabled``): a post-install hook that runs
``scenario-exporter backfill`` with the Deployment's configuration (args, env, mounts, pod
placement, hardening) and pushes the past periods by remote write. Off by default; refused
without a URL or credentials; valid for Kubernetes; its pod never one of the exporter's; its
command line, laid out on this machine by :func:`testkit.helm.job_command_line`, accepted by
the exporter's own parser. Also the testkit functions themselves.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from testkit.helm import (
    CASES,
    LOCAL_ENTRYPOINT,
    NAMESPACE,
    RELEASE,
    Manifest,
    RenderError,
    assert_hardened,
    case_id,
    chart_yaml,
    ci_values,
    container,
    expand_references,
    install_dry_run,
    job_command_line,
    load_values,
    map_paths,
    of_kind,
    one,
    pod_spec,
    render,
    write_pod_volumes,
)
from testkit.pki import make_pki

URL = "http://prometheus.monitoring:9090/api/v1/write"
ENABLE = ["backfill.enabled=true", f"backfill.remoteWrite.url={URL}"]
JOB = f"{RELEASE}-scenario-exporter-backfill"
# The Deployment's flags that are the web server's alone, which the Job leaves out.
WEB_FLAGS = ("--web.listen-address=", "--web.config.file=", "--web.health-without-auth")
WEB_VOLUMES = {"web-config", "tls"}


def _job(objects: list[Manifest]) -> Manifest:
    return one(objects, "Job")


def _job_pod(objects: list[Manifest]) -> Manifest:
    pod: Manifest = _job(objects)["spec"]["template"]["spec"]
    return pod


def _job_container(objects: list[Manifest]) -> Manifest:
    (main,) = _job_pod(objects)["containers"]
    assert main["name"] == "backfill"
    return main


def _credentials(values: Path | None) -> list[str]:
    """Credentials for the case *values* if it has none (the backfill needs them)."""
    config = load_values(values)
    if (config["accounts"] or config["existingSecret"] or config["scenario"]["apiKey"]
            or config["demo"]):
        return []
    return ["existingSecret=scenario-credentials"]


def _with_backfill(values: Path | None) -> list[Manifest]:
    """The case *values* with the backfill on."""
    enabled = load_values(values)["backfill"]["enabled"]
    return render(values, sets=[*_credentials(values), *([] if enabled else ENABLE)])


def test_not_rendered_by_default() -> None:
    assert not of_kind(render(), "Job")
    assert not of_kind(render(sets=[f"backfill.remoteWrite.url={URL}"]), "Job")
    assert of_kind(render(sets=[*ENABLE, "demo=true"]), "Job")


def test_a_post_install_hook_with_the_values_limits() -> None:
    job = _job(render(sets=[*ENABLE, "demo=true"]))
    assert job["metadata"]["name"] == JOB
    assert job["metadata"]["annotations"] == {
        "helm.sh/hook": "post-install", "helm.sh/hook-weight": "10",
        # keepSucceededJob: the log of a successful run stays until the TTL.
        "helm.sh/hook-delete-policy": "before-hook-creation"}
    defaults = load_values(None)["backfill"]
    assert {k: job["spec"][k] for k in ("backoffLimit", "activeDeadlineSeconds",
                                        "ttlSecondsAfterFinished")} == {
        "backoffLimit": defaults["backoffLimit"], "ttlSecondsAfterFinished": 86400,
        "activeDeadlineSeconds": 6 * 3600}
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["backfill", "--periods=12"]
    assert f"--remote-write.url={URL}" in args

    values = ci_values("backfill")
    config = load_values(values)["backfill"]
    job = _job(render(values))
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert job["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == (
        "before-hook-creation,hook-succeeded"), "keepSucceededJob: false, Helm deletes it"
    assert {k: job["spec"][k] for k in ("backoffLimit", "activeDeadlineSeconds",
                                        "ttlSecondsAfterFinished")} == {
        k: config[k] for k in ("backoffLimit", "activeDeadlineSeconds",
                               "ttlSecondsAfterFinished")}
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["backfill", f"--periods={config['periods']}"]
    assert args[-1] == "--upstream.max-requests-per-hour=120", "backfill.extraArgs last"


def test_labels_default_to_what_the_service_monitor_scrape_gives() -> None:
    objects = render(ci_values("everything-on"))
    service = one(objects, "Service")
    monitor = one(objects, "ServiceMonitor")["spec"]
    # No jobLabel: the Operator names the job after the Service; namespace is the target's.
    assert "jobLabel" not in monitor
    assert monitor["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    labels = [a for a in _job_container(objects)["args"] if a.startswith("--label=")]
    assert labels == [f"--label=job={service['metadata']['name']}",
                      f"--label=namespace={service['metadata']['namespace']}"]
    # Given ones win; an empty value removes a default.
    labels = [a for a in _job_container(render(ci_values("backfill")))["args"]
              if a.startswith("--label=")]
    assert labels == ["--label=cluster=ci", "--label=job=scenario"]


@pytest.mark.parametrize("sets, message", [
    (["backfill.enabled=true", "existingSecret=s"], "backfill.remoteWrite.url: set the"),
    ([*ENABLE], "the backfill reads Scenario with the exporter's credentials"),
    ([*ENABLE, "demo=true", "backfill.remoteWrite.bearerToken.secretName=a",
      "backfill.remoteWrite.basicAuth.secretName=b"], "bearerToken.secretName or basicAuth"),
    ([*ENABLE, "demo=true", "backfill.remoteWrite.ca.secretName=a",
      "backfill.remoteWrite.ca.configMapName=b"], "set configMapName or secretName, not both"),
])
def test_refused_combinations_fail_with_a_message(sets: list[str], message: str) -> None:
    with pytest.raises(RenderError, match=re.escape(message)) as caught:
        render(sets=sets)
    assert message in str(caught.value).splitlines()[0], "one line"


@pytest.mark.parametrize("override", [
    pytest.param({"periods": 0}, id="zero-periods"),
    pytest.param({"periods": "12"}, id="string-periods"),
    pytest.param({"periods": 1.5}, id="fractional-periods"),
    pytest.param({"enabled": "yes"}, id="string-for-boolean"),
    pytest.param({"remoteWrite": {"url": "prometheus:9090/api/v1/write"}}, id="url-no-scheme"),
    pytest.param({"remoteWrite": {"url": "https://user:pass@mimir/api/v1/push"}},
                 id="url-with-credentials"),
    pytest.param({"remoteWrite": {"headers": {"X-Scope-OrgID": 1}}}, id="number-header"),
    pytest.param({"remoteWrite": {"headers": {"Bad Header": "x"}}}, id="bad-header-name"),
    pytest.param({"labels": {"team-name": "x"}}, id="bad-label-name"),
    pytest.param({"remoteWrite": {"bearerToken": {"secretName": "Not_A_Name"}}},
                 id="bad-secret-name"),
    pytest.param({"activeDeadlineSeconds": 0}, id="zero-deadline"),
    pytest.param({"periods": 12, "peroids": 3}, id="typo"),
])
def test_schema_rejects_bad_backfill_values(override: dict[str, Any], tmp_path: Path) -> None:
    values = tmp_path / "bad-values.yaml"
    values.write_text(yaml.safe_dump({"demo": True, "backfill": override}))
    with pytest.raises(RenderError, match="schema"):
        render(values)


def _kube_versions() -> list[str]:
    oldest = re.search(r">=\s*v?(\d+\.\d+)", chart_yaml()["kubeVersion"])
    assert oldest
    return [oldest.group(1), ".".join(kubernetes_validate.latest_version().split(".")[:2])]


AUTH_CASES = {
    "bearer-token": ["backfill.remoteWrite.bearerToken.secretName=rw-token",
                     "backfill.remoteWrite.ca.configMapName=kube-root-ca.crt"],
    "basic-auth": ["backfill.remoteWrite.basicAuth.secretName=rw-basic",
                   "backfill.remoteWrite.basicAuth.usernameKey=user",
                   "backfill.remoteWrite.ca.secretName=rw-ca",
                   "backfill.remoteWrite.ca.key=ca.pem"],
}


@pytest.mark.parametrize("kube_version", _kube_versions())
@pytest.mark.parametrize("auth", AUTH_CASES)
def test_job_is_valid_kubernetes(auth: str, kube_version: str) -> None:
    job = _job(render(ci_values("multi-account"), sets=[*ENABLE, *AUTH_CASES[auth]]))
    try:
        kubernetes_validate.validate(job, kube_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"invalid for Kubernetes {kube_version}: {exc.message} at "
                    f"{'/'.join(str(p) for p in exc.absolute_path)}")
    assert job["metadata"]["namespace"] == NAMESPACE


BACKFILL_CASES = [pytest.param(v, id=case_id(v)) for v in CASES]


@pytest.mark.parametrize("values", BACKFILL_CASES)
def test_job_is_hardened_as_the_deployment(values: Path | None) -> None:
    objects = _with_backfill(values)
    pod, deployment_pod = _job_pod(objects), pod_spec(objects)
    for key in ("securityContext", "serviceAccountName", "automountServiceAccountToken",
                "imagePullSecrets", "priorityClassName", "nodeSelector", "tolerations",
                "affinity"):
        assert pod.get(key) == deployment_pod.get(key), key
    main = _job_container(objects)
    assert main["securityContext"] == container(objects)["securityContext"]
    assert main["image"] == container(objects)["image"]
    mounts = assert_hardened(pod, main)
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path, mount in mounts.items():
        if path != "/tmp":
            assert mount.get("readOnly") is True, path
        assert "subPath" not in mount
        assert "hostPath" not in volumes[mount["name"]]
    assert len(pod["containers"]) == 1, "no sidecar: it would keep the Job from ending"


@pytest.mark.parametrize("values", BACKFILL_CASES)
def test_job_reads_the_configuration_as_the_deployment(values: Path | None) -> None:
    """The Deployment's flags but the web server's, then the backfill's own; the same
    environment, credentials and config file mounts, and extra volumes."""
    objects = _with_backfill(values)
    deployment, main = container(objects), _job_container(objects)
    shared = [a for a in deployment["args"] if not a.startswith(WEB_FLAGS)]
    assert main["args"][2:2 + len(shared)] == shared
    assert not [a for a in main["args"] if a.startswith(WEB_FLAGS)]
    own = {a.partition("=")[0] for a in main["args"][2 + len(shared):]}
    assert own <= {"--remote-write.url", "--remote-write.header", "--label",
                   "--remote-write.bearer-token-file", "--remote-write.basic-auth.username",
                   "--remote-write.basic-auth.password-file", "--remote-write.ca-file",
                   *(a.partition("=")[0] for a in load_values(values)["backfill"]["extraArgs"])}
    env = [e for e in main.get("env", []) if e["name"] != "BACKFILL_REMOTE_WRITE_USERNAME"]
    assert env == deployment.get("env", [])
    assert main.get("envFrom") == deployment.get("envFrom")
    job_mounts = {m["name"]: m for m in main["volumeMounts"]}
    job_volumes = {v["name"]: v for v in _job_pod(objects)["volumes"]}
    deployment_volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    for mount in deployment["volumeMounts"]:
        if mount["name"] in WEB_VOLUMES:
            assert mount["name"] not in job_mounts
        elif mount["name"] != "tmp":
            assert job_mounts[mount["name"]] == mount
            assert job_volumes[mount["name"]] == deployment_volumes[mount["name"]]


@pytest.mark.parametrize("values", BACKFILL_CASES)
def test_enabling_the_backfill_changes_nothing_else(values: Path | None) -> None:
    before = render(values, sets=[*_credentials(values), "backfill.enabled=false"])
    after = _with_backfill(values)
    assert not of_kind(before, "Job") and of_kind(after, "Job")
    assert [o for o in after if o["kind"] != "Job"] == before


def test_job_pod_is_none_of_the_exporters_pods() -> None:
    """The Service, PodDisruptionBudget and NetworkPolicy select the exporter's pods by
    name and instance: a Job pod among them would be scraped, counted and confined."""
    objects = render(ci_values("everything-on"))
    labels = _job(objects)["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == RELEASE
    assert labels["app.kubernetes.io/component"] == "backfill"
    selectors = [one(objects, "Service")["spec"]["selector"],
                 one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                 one(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]]
    for selector in selectors:
        assert not selector.items() <= labels.items(), selector
    assert _job(objects)["metadata"]["labels"]["app.kubernetes.io/name"] == "scenario-exporter"
    pod = _job(objects)["spec"]["template"]["metadata"]
    assert pod["annotations"] == {"sidecar.istio.io/inject": "false"}


def test_notes_say_how_to_follow_the_job() -> None:
    notes = install_dry_run([*ENABLE, "demo=true"]).partition("NOTES:")[2]
    assert f"kubectl -n {NAMESPACE} logs -f job/{JOB}" in notes
    assert "post-install hook" in notes and URL in notes
    assert "logs -f job/" not in install_dry_run(["demo=true"]).partition("NOTES:")[2]


# --- The Job's command line on this machine (testkit.helm.job_command_line) --------------

CA = make_pki().ca.cert.decode()
REFS = {("Secret", "scenario-studio-a"): {"api-secret": "studio-a-secret"},
        ("Secret", "prometheus-remote-write"): {"username": "pusher", "password": "pw-1"},
        ("Secret", "prometheus-ca"): {"ca.crt": CA}}


def test_job_command_line_runs_the_job_as_the_pod_would(tmp_path: Path) -> None:
    objects = render(ci_values("backfill"))
    job = _job(objects)
    files = write_pod_volumes(job, tmp_path, objects=objects, refs=REFS)
    assert files == {"/tmp": tmp_path / "tmp",
                     "/etc/scenario-exporter/secrets": tmp_path / "secrets",
                     "/etc/scenario-exporter/config": tmp_path / "config",
                     "/etc/scenario-exporter/remote-write": tmp_path / "remote-write"}
    # Secrets from refs and from the chart's own Secret; the config file's paths local.
    assert (tmp_path / "secrets/studio-a/api-secret").read_text() == "studio-a-secret"
    assert (tmp_path / "secrets/sandbox/api-secret").read_text() == "ci-sandbox-secret-5d0e"
    assert (tmp_path / "remote-write/password").read_text() == "pw-1"
    assert (tmp_path / "remote-write/ca.crt").read_text() == CA
    config = yaml.safe_load((tmp_path / "config/config.yml").read_text())
    assert [a["api_secret_file"] for a in config["accounts"]] == [
        str(tmp_path / "secrets/studio-a/api-secret"),
        str(tmp_path / "secrets/sandbox/api-secret")]

    argv, env = job_command_line(job, files, objects=objects, refs=REFS)
    assert argv[:3] == [sys.executable, "-m", "exporter"] == list(LOCAL_ENTRYPOINT)
    assert argv[3:6] == ["backfill", "--periods=3",
                         f"--config.file={tmp_path}/config/config.yml"]
    assert "--remote-write.basic-auth.username=pusher" in argv, "$(VAR) expanded"
    assert f"--remote-write.basic-auth.password-file={tmp_path}/remote-write/password" in argv
    assert f"--remote-write.ca-file={tmp_path}/remote-write/ca.crt" in argv
    assert env == {"BACKFILL_REMOTE_WRITE_USERNAME": "pusher"}


def test_the_exporter_accepts_the_jobs_command_line(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter's own parser takes the Job's command line and files, as the pod has
    them: the accounts, the backfill's periods, labels and remote-write options."""
    from exporter.backfill.command import BackfillOptions
    from exporter.cli.main import parse

    objects = render(ci_values("backfill"))
    job = _job(objects)
    files = write_pod_volumes(job, tmp_path, objects=objects, refs=REFS)
    argv, env = job_command_line(job, files, objects=objects, refs=REFS)
    for name in [n for n in os.environ if n.startswith("SCENARIO")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    invocation = parse(argv[len(LOCAL_ENTRYPOINT):])
    assert invocation.command == "backfill"
    assert [(a.name, a.secret()) for a in invocation.settings.accounts] == [
        ("studio-a", "studio-a-secret"), ("sandbox", "ci-sandbox-secret-5d0e")]
    options = BackfillOptions.from_arguments(invocation.arguments)
    assert options.periods == 3 and options.start is None and options.output is None
    assert options.labels == (("cluster", "ci"), ("job", "scenario"))
    remote = options.remote_write
    assert remote is not None
    assert (remote.url, remote.basic_auth_username, remote.basic_auth_password_file,
            remote.ca_file) == (load_values(ci_values("backfill"))["backfill"]["remoteWrite"][
                "url"], "pusher", str(tmp_path / "remote-write/password"),
        str(tmp_path / "remote-write/ca.crt"))


def test_job_command_line_takes_literal_values_literally(tmp_path: Path) -> None:
    """Values with a ``$`` reach the program as given: the chart doubles it, Kubernetes
    (and job_command_line) undoes that, and expands only the chart's own $(...)."""
    objects = render(sets=["backfill.enabled=true", "demo=true", "extraEnv[0].name=HOME_DIR",
                           "extraEnv[0].value=/home",
                           "backfill.remoteWrite.url=http://p:9/$(HOME_DIR)",
                           "backfill.remoteWrite.headers.X-Scope-OrgID=a$(HOME_DIR)$$b",
                           "backfill.labels.env=$(HOME_DIR)"])
    job = _job(objects)
    argv, env = job_command_line(job, write_pod_volumes(job, tmp_path, objects=objects),
                                 objects=objects)
    assert "--remote-write.header=X-Scope-OrgID: a$(HOME_DIR)$$b" in argv
    assert "--label=env=$(HOME_DIR)" in argv
    assert "--remote-write.url=http://p:9/$(HOME_DIR)" in argv
    assert env == {"HOME_DIR": "/home"}


def _workload(container_spec: Manifest, volumes: list[Manifest]) -> Manifest:
    return {"kind": "Deployment", "spec": {"template": {"spec": {
        "containers": [container_spec], "volumes": volumes}}}}


def test_job_command_line_resolves_references_and_refuses_what_it_cannot() -> None:
    secret = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dmFsdWU="}}
    config_map = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"A": "1", "B": "2"}}
    spec = {"name": "x", "args": ["--f=$(FROM_SECRET)", "--dir=/etc/d/sub", "--o=/etc/dd"],
            "envFrom": [{"configMapRef": {"name": "c"}, "prefix": "P_"}],
            "env": [{"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s",
                                                                           "key": "k"}}},
                    {"name": "FROM_MAP", "valueFrom": {"configMapKeyRef": {"name": "c",
                                                                           "key": "B"}}},
                    {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "none", "key": "k",
                                                                    "optional": True}}},
                    {"name": "PATH_OF", "value": "/etc/d/file:$(P_A)"}],
            "volumeMounts": [{"name": "d", "mountPath": "/etc/d"}]}
    workload = _workload(spec, [{"name": "d", "emptyDir": {}}])
    argv, env = job_command_line(workload, {"/etc/d": Path("/local")},
                                 objects=[secret, config_map])
    assert argv[len(LOCAL_ENTRYPOINT):] == ["--f=value", "--dir=/local/sub", "--o=/etc/dd"]
    assert env == {"P_A": "1", "P_B": "2", "FROM_SECRET": "value", "FROM_MAP": "2",
                   "PATH_OF": "/local/file:1"}
    with pytest.raises(ValueError, match="/etc/d is in .*, but has no local path"):
        job_command_line(workload, {}, objects=[secret, config_map])
    with pytest.raises(KeyError, match="Secret s is neither rendered nor given in refs"):
        job_command_line(workload, {"/etc/d": Path("/local")}, objects=[config_map])
    refs = {("Secret", "s"): {"k": "from-refs"}}
    argv, _ = job_command_line(workload, {"/etc/d": Path("/local")}, objects=[config_map],
                               refs=refs)
    assert argv[len(LOCAL_ENTRYPOINT)] == "--f=from-refs"
    with pytest.raises(ValueError, match="not scenario-exporter"):
        job_command_line(_workload({**spec, "command": ["sh", "-c"]}, []),
                         {"/etc/d": Path("/local")}, objects=[secret, config_map])


def test_map_paths_and_expand_references() -> None:
    files = {"/etc/x": Path("/l/x"), "/etc/x/config/file.yml": Path("/other/f.yml")}
    assert map_paths("--a=/etc/x/y --b=/etc/xy --c=/a/etc/x --d=/etc/x", files) == (
        "--a=/l/x/y --b=/etc/xy --c=/a/etc/x --d=/l/x")
    assert map_paths("f: /etc/x/config/file.yml", files) == "f: /other/f.yml", "longest"
    assert map_paths("/etc/x/", files) == "/l/x/"
    with pytest.raises(ValueError, match="/etc/y"):
        map_paths("--y=/etc/y/z", files, unmapped=["/etc/y"])
    env = {"A": "1", "EMPTY": ""}
    assert expand_references("$(A)-$$(A)-$(B)-$(EMPTY)-$-$$", env) == "1-$(A)-$(B)--$-$"
