"""The load generator of the concurrency figure, run as separate processes.

``python -m bench.loadgen PORT PATH THREADS START DURATION [HEADER=VALUE ...]``
waits until wall-clock time START, then runs THREADS scrapers that each GET
PATH back to back (http.client; a server that keeps the connection alive is
reused, one that closes it is reconnected) until START + DURATION, and prints
one JSON line: responses completed within the window, those completed after it,
errors (a failed request, a status other than 200, or no answer within
Prometheus's default scrape timeout of 10 s), bytes and latencies.

It runs outside the benchmark process so that its GIL is not the one of the
process that measures, and the same generator loads the floor and the exporter.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 10.0


def scraper(port: int, path: str, headers: dict[str, str], deadline: float,
            out: dict[str, object], lock: threading.Lock) -> None:
    ok = late = errors = size = 0
    latencies: list[float] = []
    first_error = ""
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    while time.time() < deadline:
        started = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            if response.will_close:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
            conn.close()
            continue
        latencies.append(time.perf_counter() - started)
        if response.status == 200 and body:
            if time.time() <= deadline:
                ok += 1
                size += len(body)
            else:
                late += 1
        else:
            errors += 1
            first_error = first_error or f"HTTP {response.status}"
    conn.close()
    with lock:
        out["ok"] = int(out["ok"]) + ok  # type: ignore[call-overload]
        out["errors"] = int(out["errors"]) + errors  # type: ignore[call-overload]
        out["bytes"] = int(out["bytes"]) + size  # type: ignore[call-overload]
        out["late"] = int(out["late"]) + late  # type: ignore[call-overload]
        out["first_error"] = out["first_error"] or first_error
        out["latencies"].extend(latencies)  # type: ignore[attr-defined]


def main(argv: list[str]) -> None:
    port, path, threads, start, duration = (int(argv[0]), argv[1], int(argv[2]),
                                            float(argv[3]), float(argv[4]))
    headers = dict(arg.split("=", 1) for arg in argv[5:])
    out: dict[str, object] = {"ok": 0, "late": 0, "errors": 0, "bytes": 0,
                              "first_error": "", "latencies": []}
    lock = threading.Lock()
    delay = start - time.time()
    if delay > 0:
        time.sleep(min(delay, 30.0))
    workers = [threading.Thread(target=scraper,
                                args=(port, path, headers, start + duration, out, lock))
               for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(duration + REQUEST_TIMEOUT + 10)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
