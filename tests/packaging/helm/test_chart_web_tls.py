"""The exporter's web config and TLS in the chart (issue 6): HTTPS probes and scrapes, the
web config as a Secret (or the user's existing one) keeping the user's settings and passing
``promtool check web-config``, basic auth and the probes (``--web.health-without-auth``, TCP
probes, the NOTES' warning).
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.helm import (
    MOUNT_ROOT,
    NAMESPACE,
    RELEASE,
    Manifest,
    ci_values,
    container,
    install_dry_run,
    load_values,
    of_kind,
    one,
    pod_spec,
    render,
    volume_of,
    write_tls_secret,
)
from testkit.tools import require_tool


def test_tls_switches_probes_and_scrapes_to_https() -> None:
    objects = render(sets=["existingSecret=creds", "web.tls.enabled=true",
                           "web.tls.secretName=exporter-tls", "serviceMonitor.enabled=true"])
    main = container(objects)
    assert main["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert main["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    endpoint = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {
        "serverName": f"{RELEASE}-scenario-exporter.{NAMESPACE}.svc",
        "ca": {"secret": {"name": "exporter-tls", "key": "ca.crt"}}}
    web = _web_config(one(objects, "Secret"))
    tls_dir = _volume_mount_path(objects, "exporter-tls")
    assert web == {"tls_server_config": {"cert_file": f"{tls_dir}/tls.crt",
                                         "key_file": f"{tls_dir}/tls.key"}}
    assert f"--web.config.file={MOUNT_ROOT}/web/web-config.yml" in main["args"]


def _web_config(secret: Manifest) -> dict[str, Any]:
    """The web config file that the chart's *secret* holds, parsed."""
    web: dict[str, Any] = yaml.safe_load(
        base64.b64decode(secret["data"]["web-config.yml"]).decode())
    return web


def _volume_mount_path(objects: list[Manifest], secret_name: str) -> str:
    pod = pod_spec(objects)
    volume = next(v for v in pod["volumes"]
                  if v.get("secret", {}).get("secretName") == secret_name)
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == volume["name"])
    return str(mount["mountPath"])


def test_web_config_is_a_secret_and_keeps_user_tls_settings() -> None:
    objects = render(ci_values("everything-on"))
    values = load_values(ci_values("everything-on"))
    (web_secret,) = [s for s in of_kind(objects, "Secret") if "web-config.yml" in s["data"]]
    web = _web_config(web_secret)
    assert web["basic_auth_users"] == values["web"]["config"]["basic_auth_users"]
    assert web["http_server_config"] == values["web"]["config"]["http_server_config"]
    assert "tls_server_config" in web
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            assert "basic_auth_users" not in yaml.safe_dump(obj)


@pytest.mark.parametrize("sets, warned", [
    (["demo=true", "web.config.basic_auth_users.u=$2b$10$x"], True),
    (["demo=true", "web.config.basic_auth_users.u=$2b$10$x", "web.healthWithoutAuth=true"],
     False),
    (["demo=true", "web.config.basic_auth_users.u=$2b$10$x", "livenessProbe.httpGet=null",
      "livenessProbe.tcpSocket.port=http-metrics", "readinessProbe.httpGet=null",
      "readinessProbe.tcpSocket.port=http-metrics"], False),
])
def test_notes_warn_when_basic_auth_would_fail_the_probes(sets: list[str],
                                                          warned: bool) -> None:
    notes = install_dry_run(sets).partition("NOTES:")[2]
    assert ("will get 401" in notes) is warned
    assert "-u USER:PASSWORD" in notes


def test_health_without_auth_flag_and_tcp_probes() -> None:
    main = container(render(ci_values("everything-on")))
    assert "--web.health-without-auth" in main["args"]
    assert main["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    main = container(render(ci_values("web-existing-secret")))
    assert "--web.health-without-auth" not in main["args"]
    assert "httpGet" not in main["livenessProbe"]
    assert main["livenessProbe"]["tcpSocket"] == {"port": "http-metrics"}
    assert main["readinessProbe"]["tcpSocket"] == {"port": "http-metrics"}


def test_web_config_from_an_existing_secret() -> None:
    values = ci_values("web-existing-secret")
    objects = render(values)
    assert not of_kind(objects, "Secret")
    volume = volume_of(objects, Path(f"{MOUNT_ROOT}/web"))
    assert volume["secret"]["secretName"] == "scenario-web-config"
    assert volume["secret"]["items"] == [{"key": "web.yml", "path": "web-config.yml"}]
    endpoint = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["tlsConfig"] == load_values(values)["serviceMonitor"]["tlsConfig"]


def test_web_config_file_examples_pass_promtool(tmp_path: Path) -> None:
    """The web config the chart writes is one Prometheus' own tooling accepts."""
    promtool = require_tool("promtool")
    objects = render(ci_values("everything-on"))
    (web_secret,) = [s for s in of_kind(objects, "Secret") if "web-config.yml" in s["data"]]
    web = _web_config(web_secret)
    # promtool opens the certificate files: point them at a throw-away pair.
    cert, key = write_tls_secret(tmp_path)
    web["tls_server_config"] = {"cert_file": str(cert), "key_file": str(key)}
    path = tmp_path / "web-config.yml"
    path.write_text(yaml.safe_dump(web))
    result = subprocess.run([promtool, "check", "web-config", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
