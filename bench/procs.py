"""Child processes of the benchmark: the exporter, the floor server, and plain HTTP.

Everything listens on 127.0.0.1 and every process started here is stopped by
its own handle (SIGTERM, then SIGKILL after a bound), whatever happens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from tests.exporter_process import listening_port, stop_process
from tests.waiting import wait_for
from tests.web_call import http_get

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
API_KEY = "bench-key"
API_SECRET = "bench-secret-value"
START_TIMEOUT = 30.0
# How often a waiting loop looks again; small, because start-up is timed with it.
POLL_INTERVAL = 0.002


class BenchError(RuntimeError):
    """A benchmark could not run (a process did not start, a request failed)."""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of child processes: this checkout importable, nothing else changed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def status_of(port: int, path: str) -> int | None:
    """The status of GET *path*, or None while nothing answers."""
    try:
        return http_get(port, path, timeout=5.0).status
    except OSError:
        return None


class ExporterProcess:
    """``python -m exporter`` against an upstream URL, on an ephemeral loopback port."""

    def __init__(self, api_url: str, extra_args: Sequence[str] = ()) -> None:
        self.api_url = api_url
        self.extra_args = list(extra_args)
        self.port = 0
        self.started_at = 0.0
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> ExporterProcess:
        # Closed (and so deleted) by stop(): it outlives this method.
        self._log = tempfile.NamedTemporaryFile(prefix="bench-exporter-", suffix=".log")  # noqa: SIM115
        args = [sys.executable, "-m", "exporter", "--web.listen-address", f"{HOST}:0",
                "--scenario.api-url", self.api_url, "--log.format", "json",
                *self.extra_args]
        self.started_at = time.perf_counter()
        self._process = subprocess.Popen(
            args, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=child_env({"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": API_SECRET}))
        return self

    def _check_alive(self) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise BenchError(f"the exporter exited with code {self._process.returncode}: "
                             f"{self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        if self._log is None:
            return ""
        return " | ".join(Path(self._log.name).read_text(errors="replace")
                          .splitlines()[-lines:])

    def _listening_port(self) -> int | None:
        assert self._log is not None
        self._check_alive()
        for line in Path(self._log.name).read_text(errors="replace").splitlines():
            if '"listening"' in line:
                return listening_port(line)
        return None

    def wait_listening(self, timeout: float = START_TIMEOUT) -> int:
        """The port, once the exporter has logged that it listens."""
        self.port = wait_for(self._listening_port, timeout, "the exporter to listen",
                             interval=POLL_INTERVAL)
        return self.port

    def wait_status(self, path: str, timeout: float = START_TIMEOUT) -> float:
        """Wait for GET *path* to answer 200; returns the perf_counter time it did."""
        if not self.port:
            self.wait_listening(timeout)

        def answered() -> float | None:
            self._check_alive()
            return time.perf_counter() if status_of(self.port, path) == 200 else None

        return wait_for(answered, timeout, f"{path} to answer 200", interval=POLL_INTERVAL)

    def proc_status(self) -> dict[str, int]:
        """VmRSS and VmHWM (KiB) of the exporter process, from /proc."""
        return read_proc_status(self.pid)

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ExporterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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


class FloorProcess:
    """The floor: :mod:`bench.floor` serving fixed bytes per path, in its own process."""

    def __init__(self, routes: Mapping[str, tuple[bytes, Mapping[str, str]]],
                 backlog: int, nodelay: bool) -> None:
        self.backlog = backlog
        self.nodelay = nodelay
        self._dir = tempfile.TemporaryDirectory(prefix="bench-floor-")
        spec = {}
        for index, (path, (body, headers)) in enumerate(routes.items()):
            body_file = Path(self._dir.name) / f"body{index}"
            body_file.write_bytes(body)
            spec[path] = {"file": str(body_file), "headers": dict(headers)}
        self._spec = Path(self._dir.name) / "routes.json"
        self._spec.write_text(json.dumps(spec))
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> FloorProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", str(self._spec), str(self.backlog),
             "nodelay" if self.nodelay else "nagle"], cwd=REPO,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=child_env())
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # the server prints its port, then nothing
        if not line.strip().isdigit():
            self.stop()
            raise BenchError("the floor server did not start")
        self.port = int(line)
        return self

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            if self._process.stdout is not None:
                self._process.stdout.close()
        self._dir.cleanup()

    def __enter__(self) -> FloorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
