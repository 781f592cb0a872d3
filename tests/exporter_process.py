"""Run the real ``scenario-exporter`` process in tests, and read what it serves.

Used by the integration and secrets tests: the process is started as users
start it (``python -m exporter``), with a controlled environment, its output is
collected line by line by reader threads (so a chatty debug log never fills a
pipe), and every process is killed when the test ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0
_PORT_FIELD = re.compile(r"\bport=(\d+)\b")


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test runner's environment without any Scenario setting, plus *extra*."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCENARIO_", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                "https_proxy", "ALL_PROXY", "all_proxy"))}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


class ExporterProcess:
    """One ``python -m exporter`` child process and everything it wrote."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str],
                 command: Sequence[str] = (sys.executable, "-m", "exporter")) -> None:
        # *command* runs the exporter some other way, e.g. inside the built image.
        self.args = [*command, *args]
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(self.args, cwd=REPO_ROOT, env=dict(env),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                     errors="replace")
        self._readers = [threading.Thread(target=self._read, args=(name, stream), daemon=True)
                         for name, stream in (("stdout", self.proc.stdout),
                                              ("stderr", self.proc.stderr))]
        for reader in self._readers:
            reader.start()
        self._port: int | None = None
        self.http = httpx.Client(trust_env=False, timeout=15.0)

    def _read(self, name: str, stream: Any) -> None:
        for line in stream:
            with self._cond:
                self._lines[name].append(line.rstrip("\n"))
                self._cond.notify_all()
        stream.close()

    # -- output ----------------------------------------------------------------

    @property
    def stderr_lines(self) -> list[str]:
        with self._cond:
            return list(self._lines["stderr"])

    @property
    def stdout_lines(self) -> list[str]:
        with self._cond:
            return list(self._lines["stdout"])

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = START_TIMEOUT,
                      stream: str = "stderr") -> str:
        """The first line of *stream* matching *predicate*; fails if the process exits first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._lines[stream]:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None
                                      and not any(r.is_alive() for r in self._readers)):
                    raise AssertionError(
                        f"no matching line on {stream} (exit code {self.proc.poll()}):\n"
                        + "\n".join(self._lines["stderr"][-20:]))
                self._cond.wait(min(remaining, 0.1))

    # -- serving ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port from the ``msg=listening`` line (logfmt or JSON)."""
        if self._port is None:
            line = self.wait_for_line(lambda text: "listening" in text)
            self._port = listening_port(line)
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """GET *path*; ``Accept-Encoding: identity`` unless the caller asks otherwise."""
        merged = {"Accept-Encoding": "identity", **(headers or {})}
        return self.http.get(self.url + path, headers=merged)

    def metrics(self, headers: Mapping[str, str] | None = None) -> Exposition:
        response = self.get("/metrics", headers)
        assert response.status_code == 200, response.text
        return Exposition.parse(response.text)

    # -- ending ----------------------------------------------------------------

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit code (fails if the process does not exit in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the exporter did not exit within {timeout:g}s of SIGTERM") \
                from None

    def wait(self, timeout: float = START_TIMEOUT) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self) -> None:
        """Make sure the process is gone (finaliser: never leaves a child behind)."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        finally:
            for reader in self._readers:
                reader.join(5)


def free_port() -> int:
    """A loopback port nothing listens on now (for a program that takes a fixed port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM, wait up to *grace* seconds, then SIGKILL; always reaps."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


def listening_port(line: str) -> int:
    """The ``port`` field of the listening log line, in logfmt or JSON."""
    if line.lstrip().startswith("{"):
        return int(json.loads(line)["port"])
    match = _PORT_FIELD.search(line)
    assert match, f"no port= field in {line!r}"
    return int(match.group(1))


class Processes:
    """Starts exporter processes and kills them all on close (use in a fixture)."""

    def __init__(self) -> None:
        self._started: list[ExporterProcess] = []

    def start(self, *args: str, env: Mapping[str, str] | None = None,
              command: Sequence[str] = (sys.executable, "-m", "exporter")) -> ExporterProcess:
        process = ExporterProcess(args, clean_environment(env), command)
        self._started.append(process)
        return process

    def close(self) -> None:
        for process in self._started:
            process.kill()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Exposition:
    """A parsed ``/metrics`` page: samples by name and labels."""

    text: str
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str, openmetrics: bool = False) -> Exposition:
        if openmetrics:
            from prometheus_client.openmetrics.parser import (
                text_string_to_metric_families as parse_om,
            )
            families = list(parse_om(text))  # type: ignore[no-untyped-call]
        else:
            families = list(text_string_to_metric_families(text))
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in families:
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                assert key not in samples, f"duplicate sample {key}"
                samples[key] = sample.value
        return cls(text, samples)

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def by_label(self, name: str, label: str, **match: str) -> dict[str, float]:
        """``{label value: sample value}`` of every *name* sample whose labels include *match*."""
        out: dict[str, float] = {}
        for (sample, labels), value in self.samples.items():
            if sample != name:
                continue
            found = dict(labels)
            if all(found.get(k) == v for k, v in match.items()) and label in found:
                out[found[label]] = value
        return out

    def iter_names(self) -> Iterator[str]:
        return iter({name for name, _ in self.samples})


def moment(seconds: float) -> datetime:
    """A timestamp from the exposition as an aware UTC datetime (microseconds kept)."""
    return datetime.fromtimestamp(seconds, timezone.utc)
