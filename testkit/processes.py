"""Child processes of the tests and the benchmark, and what the exporter serves.

One wrapper for every program they start: the exporter (``python -m exporter``,
or the built image), Prometheus, the benchmark's floor server. Each starts with
a controlled environment; its output is collected line by line by reader
threads, so a chatty log never fills a pipe and a failure can show the last
lines; and ``stop()`` always reaps it. Free of pytest, so that ``bench/`` uses
it too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from testkit.exposition import Exposition
from testkit.repo import REPO_ROOT
from testkit.waiting import wait_for
from testkit.web import http_get

T = TypeVar("T")

START_TIMEOUT = 20.0
EXPORTER = (sys.executable, "-m", "exporter")
_PORT_FIELD = re.compile(r"\bport=(\d+)\b")


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The runner's environment without any Scenario or proxy setting, plus *extra*.

    This checkout comes first on ``PYTHONPATH``, so a child imports the code under
    test (a worktree's, not an installed copy).
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCENARIO_", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                "https_proxy", "ALL_PROXY", "all_proxy"))}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


class ChildProcess:
    """One child process, everything it wrote, and (when it serves) its loopback port."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], *, name: str = "",
                 port: int | None = None) -> None:
        self.argv = list(argv)
        self.name = name or Path(self.argv[0]).name
        self._port = port
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._cond = threading.Condition()
        self.started_at = time.perf_counter()  # what the benchmark times start-up from
        self.proc = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=dict(env),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                     errors="replace")
        self._readers = [threading.Thread(target=self._read, args=(stream, pipe), daemon=True)
                         for stream, pipe in (("stdout", self.proc.stdout),
                                              ("stderr", self.proc.stderr))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: str, pipe: Any) -> None:
        for line in pipe:
            with self._cond:
                self._lines[stream].append(line.rstrip("\n"))
                self._cond.notify_all()
        pipe.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    # -- output ----------------------------------------------------------------

    @property
    def stderr_lines(self) -> list[str]:
        with self._cond:
            return list(self._lines["stderr"])

    @property
    def stdout_lines(self) -> list[str]:
        with self._cond:
            return list(self._lines["stdout"])

    def tail(self, lines: int = 20) -> str:
        """The last *lines* of each stream, for a failure message."""
        with self._cond:
            parts = [f"--- {self.name} (exit code {self.proc.poll()}), last lines of {stream}:\n"
                     + "\n".join(self._lines[stream][-lines:])
                     for stream in ("stdout", "stderr") if self._lines[stream]]
        return "\n".join(parts) or f"--- {self.name} (exit code {self.proc.poll()}) wrote nothing"

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
                    raise AssertionError(f"no matching line on {stream} of {self.name}\n"
                                         + self.tail())
                self._cond.wait(min(remaining, 0.1))

    def wait_until(self, condition: Callable[[], T], timeout: float, what: str, *,
                   interval: float = 0.05) -> T:
        """Poll *condition* like :func:`wait_for`, failing at once if the process exits."""
        def check() -> T:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited while waiting for {what}\n"
                                     + self.tail())
            return condition()
        return wait_for(check, timeout, what, self.tail, interval=interval)

    # -- serving ---------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._port is not None, f"{self.name} has no known port"
        return self._port

    def status(self, path: str, tls: ssl.SSLContext | None = None) -> int | None:
        """The status of GET *path* on a fresh connection, or None while nothing answers."""
        try:
            return http_get(self.port, path, tls=tls, timeout=5.0).status
        except OSError:
            return None

    def wait_ready(self, path: str = "/-/ready", timeout: float = START_TIMEOUT, *,
                   tls: ssl.SSLContext | None = None, interval: float = 0.05) -> float:
        """Wait until GET *path* answers 200; the ``perf_counter()`` time it first did."""
        def answered() -> float:  # 0.0 (falsy) while it does not
            return time.perf_counter() if self.status(path, tls) == 200 else 0.0
        return self.wait_until(answered, timeout, f"{self.name}: {path} to answer 200",
                               interval=interval)

    # -- ending ----------------------------------------------------------------

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit code (fails if the process does not exit in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout:g}s of SIGTERM") \
                from None

    def wait(self, timeout: float = START_TIMEOUT) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def stop(self, grace: float = 10.0) -> None:
        """Make sure the process is gone: SIGTERM, SIGKILL after *grace* seconds; reaps."""
        stop_process(self.proc, grace)
        for reader in self._readers:
            reader.join(5)

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_Self = TypeVar("_Self", bound=ChildProcess)


class ExporterProcess(ChildProcess):
    """The exporter as users start it; *command* runs it some other way (the built image)."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str],
                 command: Sequence[str] = EXPORTER, port: int | None = None) -> None:
        # *port*: where it will listen, for a log level that hides the listening line.
        self.args = list(args)
        super().__init__([*command, *args], env, name="exporter", port=port)
        self.http = httpx.Client(trust_env=False, timeout=15.0)

    @property
    def port(self) -> int:
        """The port from the ``msg=listening`` line (logfmt or JSON), once it is logged."""
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

    def stop(self, grace: float = 10.0) -> None:
        self.http.close()
        super().stop(grace)


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
    process.wait()


def listening_port(line: str) -> int:
    """The ``port`` field of the listening log line, in logfmt or JSON."""
    if line.lstrip().startswith("{"):
        return int(json.loads(line)["port"])
    match = _PORT_FIELD.search(line)
    assert match, f"no port= field in {line!r}"
    return int(match.group(1))


class Processes:
    """Starts child processes and stops them all on close (use in a fixture)."""

    def __init__(self) -> None:
        self._started: list[ChildProcess] = []

    def start(self, *args: str, env: Mapping[str, str] | None = None,
              command: Sequence[str] = EXPORTER, port: int | None = None) -> ExporterProcess:
        """The exporter with *args*, in a clean environment plus *env*."""
        return self.add(ExporterProcess(args, clean_environment(env), command, port))

    def add(self, process: _Self) -> _Self:
        """Stop *process* too on close."""
        self._started.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self._started):
            process.stop(grace=5.0)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


