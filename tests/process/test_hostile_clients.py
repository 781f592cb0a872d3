"""Hostile and broken clients against the real exporter process, on loopback only.

Slow-loris against plain and TLS listeners (also as a non-root user under
``prlimit --nproc``), malformed request lines and headers, TLS hang-ups, a
password flood, mixed bcrypt costs, hostile configuration files and a broken
web config arriving by hot reload. Every case is bounded in connections and
time, and none may make the process print a traceback.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import pytest

from bench.slowloris import SlowLorisResult, slow_loris, threads_of
from testkit.fake_upstream import FakeUpstream
from testkit.pki import PKI, make_pki
from testkit.processes import ExporterProcess, Processes
from testkit.repo import IN_CI
from testkit.waiting import wait_for
from testkit.web import basic_authorization

#: The non-root user scripts/test.sh creates for the prlimit case when run as root.
TEST_USER = os.environ.get("SCENARIO_TEST_USER", "scenario-test")
LOOPBACK = "127.0.0.1"
CONNECTIONS = 400
DEMO = ("--demo", "--web.listen-address", f"{LOOPBACK}:0", "--log.level", "debug")
AUTH = (*DEMO, "--web.health-without-auth", "--web.config.file")  # readiness polled without auth


@pytest.fixture(scope="module")
def pki() -> PKI:
    return make_pki()


def _ready(proc: ExporterProcess, tls: ssl.SSLContext | None = None) -> ExporterProcess:
    proc.wait_ready(timeout=30, tls=tls)
    return proc


def _clean(proc: ExporterProcess) -> None:
    """Nothing the process wrote is a traceback or an error line; every line is logfmt."""
    lines = proc.stderr_lines
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
    assert not [line for line in lines if "level=error" in line], "\n".join(lines)
    assert all(line.startswith("ts=") for line in lines), "\n".join(lines)


def _assert_held(result: SlowLorisResult) -> None:
    print(result.summary())  # the closing figures: run with -s to see them
    assert result.peak_threads < 100, result.summary()
    assert result.failed_scrapes == 0, result.summary()
    assert result.worst_scrape < 2.0, result.summary()
    assert result.closed >= 0.95 * result.connections, result.summary()


# --- slow loris --------------------------------------------------------------------------


def test_slow_loris_plain(processes: Processes) -> None:
    proc = _ready(processes.start(*DEMO))
    _assert_held(slow_loris(proc.port, proc.proc.pid, connections=CONNECTIONS, deadline=40))
    _clean(proc)


def _tls_config(directory: Path, pki: PKI, extra: str = "") -> Path:
    pki.server.write(directory, "tls.crt", "tls.key")
    path = directory / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n" + extra)
    return path


def _client_tls(pki: PKI) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=pki.ca.cert.decode())


def test_slow_loris_tls(processes: Processes, tmp_path: Path, pki: PKI) -> None:
    tls = _client_tls(pki)
    proc = _ready(processes.start(*DEMO, "--web.config.file", str(_tls_config(tmp_path, pki))),
                  tls)
    # Each connection completes its handshake, then sends half a request line.
    _assert_held(slow_loris(proc.port, proc.proc.pid, connections=CONNECTIONS, deadline=40,
                            tls=tls))
    _clean(proc)


def _unprivileged_prefix() -> list[str]:
    """Run as TEST_USER under a limit of 300 processes, as a container usually is."""
    problem = None
    if os.geteuid() != 0:
        problem = "needs root to switch to a non-root user with its own process count"
    elif shutil.which("prlimit") is None or shutil.which("setpriv") is None:
        problem = "prlimit and setpriv (util-linux) are not installed"
    else:
        try:
            import pwd

            pwd.getpwnam(TEST_USER)
        except KeyError:
            problem = f"user {TEST_USER} does not exist (scripts/test.sh creates it as root)"
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    # The ambient capability lets the user read an interpreter or checkout under /root;
    # it does not lift the process limit (only CAP_SYS_RESOURCE/CAP_SYS_ADMIN do).
    return ["prlimit", "--nproc=300", "setpriv", f"--reuid={TEST_USER}", f"--regid={TEST_USER}",
            "--clear-groups", "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]


def test_slow_loris_as_non_root_under_prlimit(processes: Processes) -> None:
    proc = _ready(processes.start(
        *DEMO, command=[*_unprivileged_prefix(), sys.executable, "-m", "exporter"]))
    status = Path(f"/proc/{proc.proc.pid}/status").read_text()
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert uid != "0"
    _assert_held(slow_loris(proc.port, proc.proc.pid, connections=CONNECTIONS, deadline=40))
    _clean(proc)


# --- malformed requests --------------------------------------------------------------------


def _request(port: int, data: bytes, tls: ssl.SSLContext | None = None,
             source: str = LOOPBACK) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the status, headers and body of the response (status 0: closed)."""
    raw = socket.create_connection((LOOPBACK, port), timeout=15, source_address=(source, 0))
    sock = tls.wrap_socket(raw, server_hostname="localhost") if tls else raw
    with sock:
        sock.sendall(data)
        reader = sock.makefile("rb")
        status_line = reader.readline()
        if not status_line:
            return 0, {}, b""
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := reader.readline().rstrip(b"\r\n")):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = reader.read(int(headers.get("content-length", "0")))
        return status, headers, body


def _get(target: str, *headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: localhost", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"

MALFORMED = [
    # id, request bytes, expected status, expected Content-Type (or None)
    ("accept-bad-version", _get("/metrics", "Accept: application/openmetrics-text; version=1.a"),
     200, TEXT_FORMAT),
    ("accept-text-bad-version", _get("/metrics", "Accept: text/plain; version=x.y"),
     200, TEXT_FORMAT),
    ("accept-folded", _get("/metrics", "Accept: application/openmetrics-text; version=2.0",
                           "\tX-Injected: yes"), 200, TEXT_FORMAT),
    ("accept-escaping-junk", _get("/metrics", "Accept: application/openmetrics-text; "
                                  "version=1.0.0; escaping=<b>"), 200, TEXT_FORMAT),
    ("scrape-timeout-nan", _get("/metrics", "X-Prometheus-Scrape-Timeout-Seconds: nan"),
     200, TEXT_FORMAT),
    ("scrape-timeout-huge", _get("/metrics", "X-Prometheus-Scrape-Timeout-Seconds: 1e309"),
     200, TEXT_FORMAT),
    ("gzip-refused", _get("/metrics", "Accept-Encoding: gzip;q=0"), 200, TEXT_FORMAT),
    ("absolute-form", _get("http://localhost/metrics?name[]=scenario_up"), 200, TEXT_FORMAT),
    ("http-0.9", b"GET /\r\n\r\n", 400, None),
    ("http-9.9", b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n", 505, None),
    ("no-host", b"GET /metrics HTTP/1.1\r\n\r\n", 400, None),
    ("garbage", b"\x00\x01\x02\xff\r\n\r\n", 400, None),
    ("tls-on-plain", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), 400, None),
    ("space-in-header-name", _get("/metrics", "Bad Header: x"), 400, None),
    ("nul-in-header", _get("/metrics", "Accept: text/plain\x00"), 400, None),
    ("negative-length", _get("/metrics", "Content-Length: -1"), 400, None),
    ("header-too-large", _get("/metrics", "X-Big: " + "a" * 100_000), 431, None),
    ("bad-chunk", b"POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     400, None),
    ("post", b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405, None),
    ("bad-percent-path", _get("/%ff%00/../metrics"), 404, None),
]


@pytest.fixture(scope="module")
def demo() -> Iterator[ExporterProcess]:
    with Processes() as group:
        yield _ready(group.start(*DEMO))


@pytest.mark.parametrize(("request_bytes", "status", "content_type"),
                         [pytest.param(*case[1:], id=case[0]) for case in MALFORMED])
def test_malformed_requests(demo: ExporterProcess, request_bytes: bytes, status: int,
                            content_type: str | None) -> None:
    got, headers, body = _request(demo.port, request_bytes)
    assert got == status
    if content_type is not None:
        assert headers["content-type"] == content_type
        assert b"scenario_up" in body
    # Nothing from the request reaches a response header; no version is given away.
    assert not any("injected" in f"{k}:{v}".lower() for k, v in headers.items())
    assert "server" not in headers
    assert "content-encoding" not in headers
    _clean(demo)


def test_name_filter_and_absolute_form_select_samples(demo: ExporterProcess) -> None:
    status, _, body = _request(demo.port, _get("http://localhost/metrics?name[]=scenario_up"))
    samples = {line.split(b"{")[0] for line in body.splitlines() if not line.startswith(b"#")}
    assert (status, samples) == (200, {b"scenario_up"})


# --- TLS hang-ups ------------------------------------------------------------------------------


def test_tls_hang_ups_are_quiet(processes: Processes, tmp_path: Path, pki: PKI) -> None:
    tls = _client_tls(pki)
    proc = _ready(processes.start(*DEMO, "--web.config.file", str(_tls_config(tmp_path, pki))),
                  tls)
    for _ in range(5):
        # Mid-request, without close_notify.
        raw = socket.create_connection((LOOPBACK, proc.port), timeout=10)
        sock = tls.wrap_socket(raw, server_hostname="localhost")
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        sock.shutdown(socket.SHUT_RDWR)  # a TCP shutdown, no TLS close_notify
        sock.close()
        # Mid-handshake, with a reset.
        raw = socket.create_connection((LOOPBACK, proc.port), timeout=10)
        raw.sendall(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
        # Mid-response.
        raw = socket.create_connection((LOOPBACK, proc.port), timeout=10)
        sock = tls.wrap_socket(raw, server_hostname="localhost")
        sock.sendall(_get("/metrics"))
        sock.recv(10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    assert _request(proc.port, _get("/metrics"), tls=tls)[0] == 200
    _clean(proc)


# --- basic auth ----------------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    """The Authorization header line of a raw request."""
    return "Authorization: " + basic_authorization(user, password)


def test_a_password_flood_does_not_delay_another_clients_first_login(
        processes: Processes, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=10)).decode()
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    proc = _ready(processes.start(*AUTH, str(config)))
    stop = threading.Event()
    answers: list[tuple[int, dict[str, str]]] = []

    def flood(worker: int) -> None:
        for attempt in range(25):  # 8 workers: 200 wrong passwords at most
            if stop.is_set():
                return
            status, headers, _ = _request(proc.port, _get(
                "/metrics", _basic("prometheus", f"wrong-{worker}-{attempt}")), source="127.0.0.2")
            answers.append((status, headers))

    with ThreadPoolExecutor(max_workers=8) as pool:
        for worker in range(8):
            pool.submit(flood, worker)
        wait_for(lambda: len(answers) >= 20, 30, "the flood to be under way")
        started = time.monotonic()
        status, _, _ = _request(proc.port, _get("/metrics", _basic("prometheus", "right")),
                                source="127.0.0.3")
        login = time.monotonic() - started
        stop.set()
    assert status == 200
    assert login < 3.0, f"the first valid login took {login:.1f}s during the flood"
    assert {status for status, _ in answers} <= {401, 429}
    assert any(status == 429 and headers.get("retry-after") == "1"
               for status, headers in answers)
    _clean(proc)


def test_mixed_bcrypt_costs_are_warned_about(processes: Processes, tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text("basic_auth_users:\n"
                      f"  a: '{bcrypt.hashpw(b'x', bcrypt.gensalt(rounds=4)).decode()}'\n"
                      f"  b: '{bcrypt.hashpw(b'x', bcrypt.gensalt(rounds=6)).decode()}'\n")
    proc = processes.start(*DEMO, "--web.config.file", str(config))
    line = proc.wait_for_line(lambda text: "bcrypt costs differ" in text)
    assert "level=warning" in line and "4, 6" in line


# --- configuration files ---------------------------------------------------------------------


DEEP = "x: " + "[" * 600 + "]" * 600 + "\n"


@pytest.mark.parametrize(("flag", "text", "expected"), [
    ("--config.file", DEEP, "nested deeper than 32 levels"),
    ("--config.file", "cache: {tll: 10m}\n", "cache.tll: unknown setting; did you mean cache.ttl?"),
    ("--config.file", "log: {levle: debug}\n", "log.levle: unknown setting; did you mean "
     "log.level?"),
    ("--web.config.file", DEEP, "nested deeper than 32 levels"),
    ("--web.config.file", "tls_server_config:\n  cert_flie: a\n",
     "tls_server_config.cert_flie: unknown setting; did you mean tls_server_config.cert_file?"),
])
def test_hostile_config_files_exit_2_with_one_line(processes: Processes, tmp_path: Path,
                                                   flag: str, text: str, expected: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(text)
    proc = processes.start(*DEMO, flag, str(path))
    assert proc.wait() == 2
    assert len(proc.stderr_lines) == 1, proc.stderr_lines
    assert expected in proc.stderr_lines[0]


def test_a_broken_web_config_by_hot_reload_is_logged_once(processes: Processes,
                                                          tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    proc = _ready(processes.start(*AUTH, str(config)))
    config.write_text(DEEP)
    login = _get("/metrics", _basic("prometheus", "pw"))
    # Requests look for changes every 2 s: three rounds of looking see the same broken file.
    deadline = time.monotonic() + 7
    while time.monotonic() < deadline:
        assert _request(proc.port, login)[0] == 200
        time.sleep(0.5)
    errors = [line for line in proc.stderr_lines if "level=error" in line]
    assert len(errors) == 1 and "nested deeper than 32 levels" in errors[0], errors
    assert not any("Traceback" in line for line in proc.stderr_lines)


def test_sighup_rereads_the_web_config(processes: Processes, tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text("basic_auth_users:\n  a: '"
                      + bcrypt.hashpw(b"old", bcrypt.gensalt(rounds=4)).decode() + "'\n")
    proc = _ready(processes.start(*AUTH, str(config)))
    config.write_text("basic_auth_users:\n  a: '"
                      + bcrypt.hashpw(b"new", bcrypt.gensalt(rounds=4)).decode() + "'\n")
    # No request is made in between: only the signal can make it look at the file.
    proc.proc.send_signal(signal.SIGHUP)
    proc.wait_for_line(lambda line: "web config reloaded" in line, timeout=10)
    assert _request(proc.port, _get("/metrics", _basic("a", "new")))[0] == 200


# --- shutdown ------------------------------------------------------------------------------


def test_sigterm_lets_a_scrape_waiting_for_first_data_finish(processes: Processes) -> None:
    with FakeUpstream() as fake:
        fake.state.slow_seconds = 3.0
        fake.set_mode("slow")
        proc = processes.start("--web.listen-address", f"{LOOPBACK}:0",
                               "--scenario.api-url", fake.url,
                               env={"SCENARIO_API_KEY": "test-key",
                                    "SCENARIO_API_SECRET": "test-secret-value"})
        conn = http.client.HTTPConnection(LOOPBACK, proc.port, timeout=20)
        conn.request("GET", "/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"})
        wait_for(lambda: fake.state.in_flight > 0, 10, "the first refresh to start")
        # The event loop reads connections in the order their data arrives: once a
        # later request is answered, the scrape has been read and is in flight.
        assert _request(proc.port, _get("/-/healthy"))[0] == 200
        assert fake.state.in_flight > 0
        proc.proc.send_signal(signal.SIGTERM)
        response = conn.getresponse()
        body = response.read()
        conn.close()
        assert response.status == 200
        assert b'scenario_up{account="default"} 1.0' in body
        assert proc.wait(20) == 0


def test_threads_of_reads_proc() -> None:
    # The slow-loris figures rely on it: this process has at least this thread.
    assert threads_of(os.getpid()) >= threading.active_count()
