"""A real Prometheus server on loopback, started by a test, and its HTTP API."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from testkit.processes import ChildProcess, Processes, clean_environment, free_port
from testkit.tools import require_tool

START_TIMEOUT = 30.0
JOB = "scenario-exporter"

@dataclass
class Prometheus:
    """One Prometheus server and its HTTP API."""

    process: ChildProcess
    url: str

    @property
    def name(self) -> str:
        return self.process.name

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10,
                             trust_env=False)
        body = response.json()
        assert body.get("status") == "success", f"{self.name} {path} {params}: {body}"
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", **params)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def series_max(self, expr: str, start: float, end: float) -> float:
        """The largest value any series of *expr* takes between *start* and *end*."""
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}",
                        step="1s")
        values = [float(v) for series in data["result"] for _, v in series["values"]]
        return max((v for v in values if math.isfinite(v)), default=0.0)

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]


def prometheus_config(targets: list[str], rule_files: list[Path]) -> dict[str, Any]:
    """Scrape *targets* as one job every second, and evaluate *rule_files* as often."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
    }


def start_prometheus(processes: Processes, name: str, config: dict[str, Any], data: Path,
                     *flags: str) -> Prometheus:
    """A Prometheus server with *config* and its storage in *data*, once it is ready."""
    config_file = data.parent / f"{name}.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    argv = [require_tool("prometheus"), f"--config.file={config_file}",
            f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn", *flags]
    process = processes.add(ChildProcess(argv, clean_environment(), name=name, port=port))
    process.wait_ready(timeout=START_TIMEOUT, interval=0.2)
    return Prometheus(process, f"http://127.0.0.1:{port}")
