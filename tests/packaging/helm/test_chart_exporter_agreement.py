"""Chart and exporter cannot drift apart: the appVersion and image tag are the package's
version, the port and probes are the exporter's, and the rendered Deployment's args,
environment and mounted files (laid out under a temporary root as kubelet would) are
accepted by the exporter's own argument and config parsing, with the credentials each case
gives. A config change changes the pod template, so the pods roll.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from testkit.helm import (
    CASES,
    MOUNT_ROOT,
    Manifest,
    case_id,
    chart_yaml,
    ci_values,
    container,
    load_values,
    one,
    pod_spec,
    render,
    write_tls_secret,
)


def test_app_version_equals_package_version() -> None:
    import exporter

    chart = chart_yaml()
    assert chart["appVersion"] == exporter.__version__
    assert container(render())["image"].endswith(f":{exporter.__version__}")


def test_port_and_probes_match_the_exporter() -> None:
    from exporter.config.settings import Settings

    default_port = int(Settings.model_fields["listen_address"].default.rpartition(":")[2])
    values = load_values(None)
    assert values["containerPort"] == default_port
    assert values["service"]["port"] == default_port
    main = container(render())
    assert main["ports"] == [{"name": "http-metrics", "containerPort": default_port,
                              "protocol": "TCP"}]
    assert main["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http-metrics",
                                                "scheme": "HTTP"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http-metrics",
                                                 "scheme": "HTTP"}


def _materialise_pod(objects: list[Manifest], root: Path) -> tuple[list[str], dict[str, str],
                                                                   dict[str, str]]:
    """Lay the pod's mounted files under *root*, as kubelet would under /.

    Returns the container's args and environment with paths moved under
    *root*, and the secret each mounted file holds (existing Secrets, which the
    chart does not render, get a made-up value naming their Secret and key).
    """
    rendered = {(o["kind"], o["metadata"]["name"]): o for o in objects}

    def secret_value(name: str, key: str) -> str:
        secret = rendered.get(("Secret", name))
        if secret is None:
            return f"external:{name}:{key}"
        return base64.b64decode(secret["data"][key]).decode()

    main = container(objects)
    pod = pod_spec(objects)
    volumes = {v["name"]: v for v in pod["volumes"]}
    files: dict[str, str] = {}
    for mount in main["volumeMounts"]:
        volume = volumes[mount["name"]]
        target = root / mount["mountPath"].lstrip("/")
        entries: list[tuple[str, str]] = []
        if "configMap" in volume and ("ConfigMap", volume["configMap"]["name"]) in rendered:
            data = rendered[("ConfigMap", volume["configMap"]["name"])]["data"]
            entries = list(data.items())
        elif "projected" in volume:
            for source in volume["projected"]["sources"]:
                for item in source["secret"]["items"]:
                    entries.append((item["path"],
                                    secret_value(source["secret"]["name"], item["key"])))
        elif "secret" in volume and ("Secret", volume["secret"]["secretName"]) in rendered:
            for item in volume["secret"].get("items", []):
                entries.append((item["path"],
                                secret_value(volume["secret"]["secretName"], item["key"])))
        elif "secret" in volume and mount["mountPath"] == f"{MOUNT_ROOT}/tls":
            # A kubernetes.io/tls Secret the user (or cert-manager) provides.
            target.mkdir(parents=True, exist_ok=True)
            write_tls_secret(target)
        for relative, content in entries:
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            text = content.replace(MOUNT_ROOT, str(root / MOUNT_ROOT.lstrip("/")))
            path.write_text(text)
            files[str(path)] = content
    env = {}
    for item in main.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"].replace(MOUNT_ROOT,
                                                      str(root / MOUNT_ROOT.lstrip("/")))
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secret_value(ref["name"], ref["key"])
    args = [a.replace(MOUNT_ROOT, str(root / MOUNT_ROOT.lstrip("/"))) for a in main["args"]]
    return args, env, files


@pytest.mark.parametrize("values", CASES, ids=case_id)
def test_exporter_accepts_the_rendered_args_and_files(values: Path | None, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter's own parser takes the Deployment's args, env and mounted files."""
    from exporter.cli.main import parse

    objects = render(values)
    args, env, _ = _materialise_pod(objects, tmp_path)
    for name in [n for n in os.environ if n.startswith("SCENARIO")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = load_values(values)
    mode = ("accounts" if config["accounts"] else "existing" if config["existingSecret"]
            else "inline" if config["scenario"]["apiKey"] else
            "demo" if config["demo"] else "none")
    if mode == "none":
        with pytest.raises(Exception, match="credentials"):
            parse(args)
        return
    invocation = parse(args)
    settings = invocation.settings
    assert invocation.command == "serve"
    web_config = [a.partition("=")[2] for a in args if a.startswith("--web.config.file=")]
    if web_config and Path(web_config[0]).exists():
        from exporter.web.config import parse_web_config

        parsed = parse_web_config(web_config[0])
        assert (parsed.tls is not None) == bool(config["web"]["tls"]["enabled"])
    if mode == "accounts":
        expected = {a["name"]: a for a in config["accounts"]}
        assert [a.name for a in settings.accounts] == list(expected)
        for account in settings.accounts:
            want = expected[account.name]
            assert account.key() == want["apiKey"]
            if "apiSecret" in want:
                assert account.secret() == want["apiSecret"]
            else:
                assert account.secret() == (f"external:{want['existingSecret']}:"
                                            f"{want.get('existingSecretKey', 'api-secret')}")
            assert account.budget_creative_units == want.get("budgetCreativeUnits")
            assert list(account.project_ids) == want.get("projectIds", [])
    elif mode == "demo":
        assert settings.demo is True
        (account,) = settings.accounts
        assert account.budget_creative_units == config["scenario"]["budgetCreativeUnits"]
    else:
        (account,) = settings.accounts
        if mode == "existing":
            assert account.key() == (f"external:{config['existingSecret']}:"
                                       f"{config['existingSecretKeys']['apiKey']}")
            assert account.secret() == (f"external:{config['existingSecret']}:"
                                        f"{config['existingSecretKeys']['apiSecret']}")
        else:
            assert account.key() == config["scenario"]["apiKey"]
            assert account.secret() == config["scenario"]["apiSecret"]
        assert list(account.project_ids) == config["scenario"]["projectIds"]
        assert account.budget_creative_units == config["scenario"]["budgetCreativeUnits"]


def test_config_change_rolls_the_pods() -> None:
    def checksum(ttl: str) -> str:
        deployment = one(render(ci_values("multi-account"), sets=[f"config.cache.ttl={ttl}"]),
                         "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum("10m") != checksum("15m")
