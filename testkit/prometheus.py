"""Real Prometheus servers on loopback, started by a test, and their HTTP API.

Every check that runs Prometheus or promtool runs on both majors that users
have: the machine's own 2.x (Debian's package; 2.42 on Debian 12, 2.53 on 13)
and 3.x from .cache/prometheus3/ (Debian unstable's packages, which
scripts/install-prometheus3.sh fetches). :data:`BUILDS` parametrises such a
test, so that a failure names the version.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from testkit.processes import ChildProcess, Processes, clean_environment, free_port
from testkit.repo import IN_CI, REPO_ROOT

START_TIMEOUT = 30.0
JOB = "scenario-exporter"
PROMETHEUS_3 = REPO_ROOT / ".cache" / "prometheus3" / "usr" / "bin"
MAJORS = (2, 3)


@dataclass(frozen=True)
class Build:
    """One Prometheus release: the directory of its ``prometheus`` and ``promtool``."""

    major: int
    version: str
    bin: Path

    @property
    def prometheus(self) -> str:
        return str(self.bin / "prometheus")

    @property
    def promtool(self) -> str:
        return str(self.bin / "promtool")

    def __str__(self) -> str:
        return f"prometheus-{self.version}"


def _version(prometheus: Path) -> str | None:
    try:
        result = subprocess.run([str(prometheus), "--version"], capture_output=True, text=True,
                                timeout=30, check=False)
    except OSError:
        return None
    match = re.search(r"version (\d+\.\d+\.\d+)", result.stdout + result.stderr)
    return match[1] if match else None


@cache
def find_build(major: int) -> Build | None:
    """Prometheus *major* with its promtool, if this machine has it: 2 on the PATH, 3
    in .cache/prometheus3/."""
    if major == 3:
        directory: Path | None = PROMETHEUS_3
    else:
        found = shutil.which("prometheus")
        directory = Path(found).parent if found else None
    if directory is None or not (directory / "promtool").exists():
        return None
    version = _version(directory / "prometheus")
    if version is None or not version.startswith(f"{major}."):
        return None
    return Build(major, version, directory)


def build_params() -> list[Any]:
    """A ``pytest.param`` for each major, with the version as id (``prometheus-3.5.3``);
    a missing major's value is the number, which :func:`require_build` turns into a skip
    on a laptop and a failure in CI, which must prove both."""
    params = []
    for major in MAJORS:
        build = find_build(major)
        params.append(pytest.param(build, id=str(build)) if build is not None
                      else pytest.param(major, id=f"prometheus-{major}.x-missing"))
    return params


def require_build(param: Build | int) -> Build:
    """The build a test is parametrised with (:data:`BUILDS`): skipped locally, failed
    in CI, when that major is missing."""
    if isinstance(param, Build):
        return param
    message = (f"Prometheus {param}.x is not installed (scripts/test.sh installs it, "
               "3.x with scripts/install-prometheus3.sh)")
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


BUILDS = build_params()


@dataclass
class QueryAPI:
    """A server of Prometheus' HTTP query API at :attr:`url`, which VictoriaMetrics serves
    too (testkit.victoria): one implementation of the queries for both."""

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


class Prometheus(QueryAPI):
    """One Prometheus server and its HTTP API."""

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


def start_prometheus(build: Build, processes: Processes, name: str, config: dict[str, Any],
                     data: Path, *flags: str) -> Prometheus:
    """A Prometheus server of *build* with *config* and its storage in *data*, once it is
    ready; its process is named after the version (``prometheus-3.5.3-single``)."""
    name = f"{build}-{name.removeprefix('prometheus-')}"
    config_file = data.parent / f"{name}.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    argv = [build.prometheus, f"--config.file={config_file}",
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


def load_openmetrics(build: Build, files: list[Path], data: Path) -> None:
    """Turn OpenMetrics files (a backfill's output) into TSDB blocks in *data*, with the
    promtool of *build*."""
    for path in files:
        run_tool([build.promtool, "tsdb", "create-blocks-from", "openmetrics", str(path),
                  str(data)])


def rule_passes(rule_file: Path) -> list[list[dict[str, Any]]]:
    """The recording rules of *rule_file* in passes: each rule in the pass after the last
    of the rules whose series it reads (promtool cannot backfill a rule from another rule
    backfilled in the same run).

    Rules that read each other (the money figure reads what it priced at its last
    evaluation, recorded after it) are taken in the file's order, the first alone: it
    reads nothing of the others, as in a Prometheus that has just started."""
    rules = [rule for group in yaml.safe_load(rule_file.read_text(encoding="utf-8"))["groups"]
             for rule in group["rules"] if "record" in rule]
    passes: list[list[dict[str, Any]]] = []
    done: set[str] = set()
    while len(done) < len(rules):
        left = [rule for rule in rules if rule["record"] not in done]
        ready = [rule for rule in left
                 if not any(other["record"] in rule["expr"] for other in left
                            if other is not rule)]
        passes.append(ready or left[:1])
        done.update(rule["record"] for rule in passes[-1])
    return passes


# Where the rules passes' files go: one path in every run. Prometheus (and promtool)
# offset a group's evaluations within its interval by a hash of the group's file path:
# under a fresh temporary directory each run evaluated at other offsets, and some runs'
# last pass left its series without data (CI, twice, on both servers of a fixture, which
# share their pass files); at a fixed path every run evaluates at the same instants.
RULE_PASSES = Path(tempfile.gettempdir()) / "scenario-exporter-rule-passes"


def backfill_recording_rules(build: Build, processes: Processes, data: Path, rule_file: Path,
                             ranges: list[tuple[float, float]], eval_interval: str,
                             scratch: Path, passes: Path) -> None:
    """Write the recording rules of *rule_file* over *ranges* (Unix seconds) into *data*,
    evaluated by the promtool of *build* against its Prometheus serving *data* (stopped
    afterwards).

    The rules of each pass are written to a file in *passes*: servers backfilled
    with the same *passes* are evaluated at the same instants, since Prometheus
    offsets a group's evaluations by a hash of its file's path and name. Each pass's
    server must show every series name the earlier passes showed and wrote (promtool
    writes nothing, and exits 0, when its server answers every query with nothing).
    """
    for directory in (scratch, passes):
        directory.mkdir(parents=True, exist_ok=True)
    span = (math.ceil(min(start for start, _ in ranges)), int(max(end for _, end in ranges)))
    seen: set[str] = set()
    written: list[str] = []  # the rules of the last pass, when it wrote blocks
    for number, rules in enumerate([*rule_passes(rule_file), []]):
        server = start_prometheus(build, processes, f"rules-{number}",
                                  prometheus_config([], []), data, *KEEP_EVERYTHING)
        try:
            seen = _names_loaded(server, span, seen, written, number)
            if not rules:
                return  # the last server only checked what the last pass wrote
            pass_file = passes / f"{rule_file.stem}-pass-{number}.yml"
            pass_file.write_text(
                yaml.safe_dump({"groups": [{"name": "backfill", "rules": rules}]}),
                encoding="utf-8")
            output = scratch / f"rules-{number}"
            for start, end in ranges:
                run_tool([build.promtool, "tsdb", "create-blocks-from", "rules",
                          f"--start={math.ceil(start)}", f"--end={int(end)}",
                          f"--url={server.url}", f"--eval-interval={eval_interval}",
                          f"--output-dir={output}", str(pass_file)])
        finally:
            server.process.stop()
        blocks = list(output.glob("*"))
        written = [rule["record"] for rule in rules] if blocks else []
        for block in blocks:
            shutil.move(str(block), data / block.name)


def _names_loaded(server: Prometheus, span: tuple[int, int], seen: set[str],
                  written: list[str], number: int) -> set[str]:
    """The series names *server* holds over *span*, once they include *seen* and one of
    *written* (the blocks just added): a server that misses them fails the backfill
    here, by name, rather than its figures later."""
    def loaded() -> set[str]:
        names = set(server.api("label/__name__/values", start=str(span[0]), end=str(span[1])))
        ready = seen <= names and (not written or bool(names & set(written)))
        return names if ready else set()
    return server.process.wait_until(
        loaded, START_TIMEOUT,
        f"rules pass {number}: the series of the blocks written before it ({written or seen})",
        interval=0.5)
