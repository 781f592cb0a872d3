"""``python -m bench.slowloris``: idle half-sent requests against the exporter, measured.

Opens ``--connections`` loopback connections to an exporter (one it starts
with ``--demo``), each sending half a request line and then nothing, and
scrapes ``/metrics`` once a second on fresh connections meanwhile. It prints
the exporter's peak thread count, the worst scrape latency, failed scrapes and
how many of the idle connections the exporter closed within ``--deadline``
seconds (docs/security.md quotes these figures). The hostile-client tests
run :func:`slow_loris` against plain and TLS listeners and assert on it.
"""

from __future__ import annotations

import argparse
import http.client
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HALF_REQUEST = b"GET /metrics HT"
SCRAPE_TIMEOUT = 10.0


@dataclass
class SlowLorisResult:
    """What one run measured."""

    connections: int
    deadline: float
    closed_after: list[float] = field(default_factory=list)
    scrape_latencies: list[float] = field(default_factory=list)
    failed_scrapes: int = 0
    peak_threads: int = 0

    @property
    def closed(self) -> int:
        """Idle connections the server closed within the deadline."""
        return sum(1 for after in self.closed_after if after <= self.deadline)

    @property
    def worst_scrape(self) -> float:
        return max(self.scrape_latencies, default=float("inf"))

    def summary(self) -> str:
        return (f"{self.connections} idle connections: peak threads {self.peak_threads}, "
                f"scrapes {len(self.scrape_latencies)} ok / {self.failed_scrapes} failed, "
                f"worst scrape {self.worst_scrape * 1000:.0f} ms, "
                f"closed within {self.deadline:g}s {self.closed}/{self.connections} "
                f"({100 * self.closed / max(self.connections, 1):.0f}%), "
                f"last closed after {max(self.closed_after, default=0):.1f}s")


def threads_of(pid: int) -> int:
    """The thread count of process *pid* (``Threads:`` in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise ValueError(f"no Threads line for pid {pid}")


def _scrape(port: int, tls: ssl.SSLContext | None, headers: dict[str, str]) -> float | None:
    """Seconds one GET /metrics on a new connection took, or None if it failed."""
    started = time.perf_counter()
    conn: http.client.HTTPConnection
    if tls is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=tls,
                                           timeout=SCRAPE_TIMEOUT)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SCRAPE_TIMEOUT)
    try:
        conn.request("GET", "/metrics", headers={"Accept-Encoding": "identity", **headers})
        response = conn.getresponse()
        response.read()
        return time.perf_counter() - started if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _open(port: int, tls: ssl.SSLContext | None) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=SCRAPE_TIMEOUT)
    sock = tls.wrap_socket(raw, server_hostname="localhost") if tls is not None else raw
    sock.sendall(HALF_REQUEST)
    sock.setblocking(False)
    return sock


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ssl.SSLWantReadError, BlockingIOError):
        return False  # TLS records that carried no data (session tickets), or nothing yet
    except OSError:  # reset, or a TLS alert
        return True


def slow_loris(port: int, pid: int, *, connections: int = 400, deadline: float = 40.0,
               tls: ssl.SSLContext | None = None,
               scrape_headers: dict[str, str] | None = None) -> SlowLorisResult:
    """Hold *connections* half-sent requests open; scrape once a second until all are closed.

    Stops at *deadline* seconds after the last connection opened, or once
    every connection is closed (after at least three scrapes).
    """
    result = SlowLorisResult(connections=connections, deadline=deadline)
    selector = selectors.DefaultSelector()
    opened: dict[socket.socket, float] = {}
    done = threading.Event()

    def scraper() -> None:
        while not done.is_set():
            latency = _scrape(port, tls, scrape_headers or {})
            if latency is None:
                result.failed_scrapes += 1
            else:
                result.scrape_latencies.append(latency)
            done.wait(max(0.0, 1.0 - (latency or 0.0)))

    try:
        for _ in range(connections):
            sock = _open(port, tls)
            opened[sock] = time.monotonic()
            selector.register(sock, selectors.EVENT_READ)
        started = time.monotonic()
        thread = threading.Thread(target=scraper, name="scraper", daemon=True)
        thread.start()
        while opened and time.monotonic() - started < deadline:
            result.peak_threads = max(result.peak_threads, threads_of(pid))
            for key, _ in selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if _closed_by_peer(sock):
                    result.closed_after.append(time.monotonic() - opened.pop(sock))
                    selector.unregister(sock)
                    sock.close()
        while len(result.scrape_latencies) + result.failed_scrapes < 3 and thread.is_alive():
            result.peak_threads = max(result.peak_threads, threads_of(pid))
            time.sleep(0.2)
        done.set()
        thread.join(SCRAPE_TIMEOUT + 1)
    finally:
        done.set()
        for sock in opened:
            sock.close()
        selector.close()
    return result


def main(argv: list[str] | None = None) -> int:
    from bench.procs import start_exporter, wait_status

    parser = argparse.ArgumentParser(prog="python -m bench.slowloris", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--deadline", type=float, default=40.0)
    args = parser.parse_args(argv)
    with start_exporter("http://127.0.0.1:9", ["--demo"]) as exporter:
        port = exporter.port
        wait_status(exporter, "/metrics")
        result = slow_loris(port, exporter.pid, connections=args.connections,
                            deadline=args.deadline)
    print(result.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
