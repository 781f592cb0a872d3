"""The chart's hardening: a non-root, read-only, capability-less pod with no service
account token and no writable path but a bounded /tmp; the API secret only ever inside the
chart's Secret (base64, in ``data``), never in other objects, the install NOTES or an
environment variable; and a NetworkPolicy that lets in scrapes and lets out DNS and HTTPS
only.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from testkit.helm import (
    CASES,
    RELEASE,
    assert_hardened,
    case_id,
    ci_values,
    container,
    install_dry_run,
    load_values,
    of_kind,
    one,
    pod_spec,
    render,
)


@pytest.mark.parametrize("values", CASES, ids=case_id)
def test_hardened_security_context(values: Path | None) -> None:
    objects = render(values)
    pod = pod_spec(objects)
    mounts = assert_hardened(pod, container(objects))
    assert container(objects)["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # The only writable path is a bounded emptyDir on /tmp.
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path, mount in mounts.items():
        if path != "/tmp":
            assert mount.get("readOnly") is True, path
        assert "subPath" not in mount, "subPath mounts do not see Secret updates"
        assert "hostPath" not in volumes.get(mount["name"], {})
    for account in of_kind(objects, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


SECRET = "s3cr3t-" + "9d1f4c2ab7e0"


@pytest.mark.parametrize("sets", [
    pytest.param(["scenario.apiKey=key-1", f"scenario.apiSecret={SECRET}"], id="single"),
    pytest.param(["accounts[0].name=a", "accounts[0].apiKey=key-1",
                  f"accounts[0].apiSecret={SECRET}", "accounts[1].name=b",
                  "accounts[1].apiKey=key-2", "accounts[1].existingSecret=b-secret"],
                 id="accounts"),
])
def test_secret_value_only_inside_the_secret(sets: list[str]) -> None:
    objects = render(sets=sets)
    encoded = base64.b64encode(SECRET.encode()).decode()
    holders = []
    for obj in objects:
        text = yaml.safe_dump(obj)
        if SECRET in text or encoded in text:
            holders.append(obj)
    assert [(o["kind"], o["metadata"]["name"]) for o in holders] == [
        ("Secret", f"{RELEASE}-scenario-exporter")]
    assert SECRET not in yaml.safe_dump(holders[0]), "stored base64-encoded, in data"
    # Nor in NOTES, nor anywhere else helm prints at install.
    notes = install_dry_run(sets)
    assert SECRET not in notes
    assert notes.count(encoded) == 1
    # The pod gets it as a file, never as a literal environment value.
    for env in container(objects).get("env", []):
        assert "value" not in env or SECRET not in env["value"]
        assert env["name"] != "SCENARIO_API_SECRET", "secrets go in files, not variables"


def test_network_policy_allows_scrapes_dns_and_https_only() -> None:
    objects = render(ci_values("everything-on"))
    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"] == (
        one(objects, "Deployment")["spec"]["selector"]["matchLabels"])
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    assert ingress["from"] == load_values(ci_values("everything-on"))["networkPolicy"][
        "ingressFrom"]
    egress_ports = sorted((p["port"], p["protocol"]) for rule in policy["egress"]
                          for p in rule["ports"])
    assert egress_ports == [(53, "TCP"), (53, "UDP"), (443, "TCP")]
