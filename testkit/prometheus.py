"""A real Prometheus server on loopback, started by a test, and its HTTP API."""

from __future__ import annotations

import math
import shutil
import subprocess
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


# Blocks outside the retention are deleted at start-up: keep a year and more.
KEEP_EVERYTHING = ("--storage.tsdb.retention.time=400d",)


def run_tool(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command line tool (the backfill, promtool) to completion; fail with its output."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{argv[:4]}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def load_openmetrics(files: list[Path], data: Path) -> None:
    """Turn OpenMetrics files (a backfill's output) into TSDB blocks in *data*."""
    promtool = require_tool("promtool")
    for path in files:
        run_tool([promtool, "tsdb", "create-blocks-from", "openmetrics", str(path), str(data)])


def rule_passes(rule_file: Path) -> list[list[dict[str, Any]]]:
    """The recording rules of *rule_file* in passes: each rule in the pass after the last
    of the rules whose series it reads (promtool cannot backfill a rule from another rule
    backfilled in the same run)."""
    rules = [rule for group in yaml.safe_load(rule_file.read_text(encoding="utf-8"))["groups"]
             for rule in group["rules"] if "record" in rule]
    passes: list[list[dict[str, Any]]] = []
    done: set[str] = set()
    while len(done) < len(rules):
        ready = [rule for rule in rules if rule["record"] not in done and
                 not any(other["record"] in rule["expr"] for other in rules
                         if other["record"] not in done and other is not rule)]
        assert ready, f"{rule_file}: recording rules that read each other"
        passes.append(ready)
        done.update(rule["record"] for rule in ready)
    return passes


def backfill_recording_rules(processes: Processes, data: Path, rule_file: Path,
                             ranges: list[tuple[float, float]], eval_interval: str,
                             scratch: Path, passes: Path) -> None:
    """Write the recording rules of *rule_file* over *ranges* (Unix seconds) into *data*,
    evaluated by promtool against a Prometheus serving *data* (stopped afterwards).

    The rules of each pass are written to a file in *passes*: servers backfilled
    with the same *passes* are evaluated at the same instants, since Prometheus
    offsets a group's evaluations by a hash of its file's path and name.
    """
    promtool = require_tool("promtool")
    for directory in (scratch, passes):
        directory.mkdir(parents=True, exist_ok=True)
    for number, rules in enumerate(rule_passes(rule_file)):
        pass_file = passes / f"{rule_file.stem}-pass-{number}.yml"
        pass_file.write_text(yaml.safe_dump({"groups": [{"name": "backfill", "rules": rules}]}),
                             encoding="utf-8")
        server = start_prometheus(processes, f"prometheus-rules-{number}",
                                  prometheus_config([], []), data, *KEEP_EVERYTHING)
        output = scratch / f"rules-{number}"
        try:
            for start, end in ranges:
                run_tool([promtool, "tsdb", "create-blocks-from", "rules",
                          f"--start={math.ceil(start)}", f"--end={int(end)}",
                          f"--url={server.url}", f"--eval-interval={eval_interval}",
                          f"--output-dir={output}", str(pass_file)])
        finally:
            server.process.stop()
        for block in output.glob("*"):
            shutil.move(str(block), data / block.name)
