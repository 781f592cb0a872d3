"""The deployment examples outside Kubernetes: a systemd unit and a compose file.

Each is checked by its own tool where one runs here (``systemd-analyze
verify``), and its command, environment and credential files are run as the
tests run the exporter: against the loopback fake, where data must flow.
"""

from __future__ import annotations

import shlex
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import yaml

from exporter.upstream.demo import DemoAccount
from testkit.fake_upstream import FakeUpstream
from testkit.processes import Processes
from testkit.repo import REPO_ROOT
from testkit.tools import require_tool
from testkit.waiting import wait_for

UNIT = REPO_ROOT / "examples" / "systemd" / "scenario-exporter.service"
COMPOSE = REPO_ROOT / "examples" / "compose" / "compose.yaml"
KEY, SECRET = "example-key", "example-secret"
LOOPBACK = "--web.listen-address=127.0.0.1:0"  # given last: the last flag wins


def service_section(path: Path) -> list[tuple[str, str]]:
    """``(key, value)`` of the [Service] section, repeated keys kept in order."""
    entries, section = [], ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith(("#", ";")) and section == "Service":
            key, _, value = line.partition("=")
            entries.append((key, value))
    return entries


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    installed = Path(sysconfig.get_path("scripts")) / "scenario-exporter"
    assert installed.exists(), "scripts/test.sh installs the package (pip install -e .)"
    # The unit names the venv of its install notes; verify checks that the
    # command exists, so point it at the console script installed here.
    (exec_start,) = [v for k, v in service_section(UNIT) if k == "ExecStart"]
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(shlex.split(exec_start)[0], str(installed)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0 and not result.stderr.strip(), result.stdout + result.stderr


def _fake() -> FakeUpstream:
    return FakeUpstream(DemoAccount(models=4, users=2), KEY, SECRET)


def test_systemd_unit_command_serves_data(processes: Processes, tmp_path: Path) -> None:
    entries = service_section(UNIT)
    (exec_start,) = [v for k, v in entries if k == "ExecStart"]
    assert shlex.split(exec_start)[0].endswith("/bin/scenario-exporter")
    # LoadCredential=NAME:PATH copies PATH to $CREDENTIALS_DIRECTORY/NAME (%d).
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    loaded = dict(v.split(":", 1) for k, v in entries if k == "LoadCredential")
    assert set(loaded) == {"api-key", "api-secret"}
    (credentials / "api-key").write_text(KEY)
    (credentials / "api-secret").write_text(SECRET)
    env = dict(v.split("=", 1) for k, v in entries if k == "Environment")
    env = {k: v.replace("%d", str(credentials)) for k, v in env.items()}
    with _fake() as fake:
        exporter = processes.start(*shlex.split(exec_start)[1:], LOOPBACK,
                                   env={**env, "SCENARIO_EXPORTER_SCENARIO_API_URL": fake.url})
        wait_for(lambda: exporter.metrics().value("scenario_up", account="default") == 1, 30,
                 "data", lambda: "\n".join(exporter.stderr_lines[-5:]))


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_compose_file_is_hardened_and_its_secrets_exist() -> None:
    document = _compose()
    (service,) = document["services"].values()
    assert service["read_only"] is True and service["tmpfs"] == ["/tmp"]
    assert service["user"] == "10001:10001", "the image's user"
    assert service["cap_drop"] == ["ALL"]
    assert (COMPOSE.parent / service["build"]["context"] / "Dockerfile").exists()
    assert set(service["secrets"]) == set(document["secrets"])
    for variable in ("SCENARIO_API_KEY_FILE", "SCENARIO_API_SECRET_FILE"):
        name = service["environment"][variable].removeprefix("/run/secrets/")
        assert name in service["secrets"], variable
    assert "SCENARIO_API_SECRET" not in service["environment"], "secrets go in files"


def test_compose_command_serves_data(processes: Processes, tmp_path: Path) -> None:
    document = _compose()
    (service,) = document["services"].values()
    # Compose mounts each secret's file at /run/secrets/NAME.
    secrets = tmp_path / "run-secrets"
    secrets.mkdir()
    values = {"api-key": KEY, "api-secret": SECRET}
    for name, source in document["secrets"].items():
        (secrets / name).write_text(values[Path(source["file"]).name])
    env = {k: v.replace("/run/secrets", str(secrets))
           for k, v in service["environment"].items()}
    with _fake() as fake:
        exporter = processes.start(*service["command"], LOOPBACK,
                                   env={**env, "SCENARIO_EXPORTER_SCENARIO_API_URL": fake.url})
        wait_for(lambda: exporter.metrics().value("scenario_up", account="default") == 1, 30,
                 "data", lambda: "\n".join(exporter.stderr_lines[-5:]))
