"""Scrape figures: warm latency against the floor, and many scrapers at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from time import perf_counter

from bench.procs import BenchError, cpu_seconds
from bench.stats import med
from testkit.processes import clean_environment, stop_process
from testkit.repo import REPO_ROOT
from testkit.web import http_get

# What Prometheus 2.x sends (3.x puts OpenMetrics first too), and a bare GET as
# curl or a browser would send it.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0;q=0.5,"
                     "application/openmetrics-text;version=0.0.1;q=0.4,"
                     "text/plain;version=0.0.4;q=0.3,*/*;q=0.1")
REQUESTS: dict[str, dict[str, str]] = {
    "text": {},
    "prometheus": {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip",
                   "X-Prometheus-Scrape-Timeout-Seconds": "10"},
}
WARM_UP = 5


def _latency(port: int, path: str, headers: Mapping[str, str]) -> float:
    started = perf_counter()
    reply = http_get(port, path, headers)
    status, body = reply.status, reply.body
    elapsed = perf_counter() - started
    if status != 200 or not body:
        raise BenchError(f"GET {path} on port {port} answered {status}")
    return elapsed


def warm_latency(floor: tuple[int, str], exporter: tuple[int, str], headers: Mapping[str, str],
                 requests: int) -> tuple[float, float]:
    """Median latency of the floor and of the exporter over *requests* sequential GETs each.

    The two alternate request by request (floor first, then exporter first, and
    so on), so that both see the same moments of a shared machine's noise.
    """
    for _ in range(WARM_UP):
        _latency(*floor, headers)
        _latency(*exporter, headers)
    floor_times: list[float] = []
    exporter_times: list[float] = []
    for index in range(requests):
        pairs = [(floor, floor_times), (exporter, exporter_times)]
        for (port, path), into in (pairs if index % 2 == 0 else pairs[::-1]):
            into.append(_latency(port, path, headers))
    return med(floor_times), med(exporter_times)


@dataclass(frozen=True)
class LoadResult:
    """What a run of the load generator saw."""

    ok: int  # completed within the window
    late: int  # completed after it
    errors: int
    seconds: float
    body_bytes: int
    p50: float
    p99: float
    first_error: str
    server_cpu: float  # seconds of CPU the server process used during the run

    @property
    def cpu_per_response(self) -> float:
        answered = self.ok + self.late
        return self.server_cpu / answered if answered else 0.0

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def load(port: int, path: str, headers: Mapping[str, str], scrapers: int, seconds: float,
         processes: int, server_pid: int) -> LoadResult:
    """*scrapers* threads, spread over *processes* load-generator processes, for *seconds*."""
    cpu_before = cpu_seconds(server_pid)
    start_at = time.time() + 1.5  # lets every generator import and start its threads
    shares = [scrapers // processes + (1 if i < scrapers % processes else 0)
              for i in range(processes)]
    args = [f"{k}={v}" for k, v in headers.items()]
    children = [subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", str(port), path, str(share), repr(start_at),
         repr(seconds), *args], cwd=REPO_ROOT, env=clean_environment(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE) for share in shares if share]
    outputs = []
    try:
        for child in children:
            out, _ = child.communicate(timeout=seconds + 60)
            if child.returncode != 0:
                raise BenchError(f"the load generator failed (exit {child.returncode})")
            outputs.append(json.loads(out))
    finally:
        for child in children:
            stop_process(child, grace=2.0)
    server_cpu = cpu_seconds(server_pid) - cpu_before
    latencies = sorted(x for o in outputs for x in o["latencies"])
    if not latencies:
        raise BenchError("the load generator completed no request")
    return LoadResult(
        ok=sum(o["ok"] for o in outputs), late=sum(o["late"] for o in outputs),
        errors=sum(o["errors"] for o in outputs), seconds=seconds,
        body_bytes=sum(o["bytes"] for o in outputs),
        p50=latencies[len(latencies) // 2], p99=latencies[int(len(latencies) * 0.99)],
        first_error=next((o["first_error"] for o in outputs if o["first_error"]), ""),
        server_cpu=server_cpu)
