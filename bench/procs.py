"""Child processes of the benchmark: the exporter and the floor server.

Both are the testkit's :class:`testkit.processes.ChildProcess` (one wrapper for every
child of the tests and the benchmark): everything listens on 127.0.0.1 and
every process is stopped by its handle (SIGTERM, then SIGKILL after a bound),
whatever happens.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from testkit.processes import ChildProcess, ExporterProcess, clean_environment

HOST = "127.0.0.1"
API_KEY = "bench-key"
API_SECRET = "bench-secret-value"
START_TIMEOUT = 30.0
# How often a waiting loop looks again; small, because start-up is timed with it.
POLL_INTERVAL = 0.002


class BenchError(RuntimeError):
    """A benchmark could not run (a process did not start, a request failed)."""


def start_exporter(api_url: str, extra_args: Sequence[str] = ()) -> ExporterProcess:
    """``python -m exporter`` against *api_url*, on an ephemeral loopback port."""
    return ExporterProcess(
        ["--web.listen-address", f"{HOST}:0", "--scenario.api-url", api_url,
         "--log.format", "json", *extra_args],
        clean_environment({"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": API_SECRET}))


def wait_status(process: ChildProcess, path: str, timeout: float = START_TIMEOUT) -> float:
    """Wait for GET *path* to answer 200, looking every 2 ms; the perf_counter time it did."""
    try:
        return process.wait_ready(path, timeout, interval=POLL_INTERVAL)
    except AssertionError as error:
        raise BenchError(str(error)) from None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_proc_status(pid: int | str = "self") -> dict[str, int]:
    """The ``Vm*`` lines of /proc/<pid>/status, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Vm") and value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


class FloorProcess(ChildProcess):
    """The floor: :mod:`bench.floor` serving fixed bytes per path, in its own process."""

    def __init__(self, routes: Mapping[str, tuple[bytes, Mapping[str, str]]],
                 backlog: int, nodelay: bool) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bench-floor-")
        spec = {}
        for index, (path, (body, headers)) in enumerate(routes.items()):
            body_file = Path(self._dir.name) / f"body{index}"
            body_file.write_bytes(body)
            spec[path] = {"file": str(body_file), "headers": dict(headers)}
        spec_file = Path(self._dir.name) / "routes.json"
        spec_file.write_text(json.dumps(spec))
        super().__init__([sys.executable, "-m", "bench.floor", str(spec_file), str(backlog),
                          "nodelay" if nodelay else "nagle"], clean_environment(), name="floor")
        try:  # the server prints its port, then nothing
            self._port = int(self.wait_for_line(str.isdigit, START_TIMEOUT, stream="stdout"))
        except AssertionError as error:
            self.stop()
            raise BenchError(f"the floor server did not start: {error}") from None

    def stop(self, grace: float = 10.0) -> None:
        super().stop(grace)
        self._dir.cleanup()
