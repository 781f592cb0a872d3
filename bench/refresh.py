"""Refresh figures, measured in a fresh process: ``python -m bench.refresh``.

``timing REPEATS FILE...`` times, per upstream body, ``json.loads`` of its bytes
(the floor) against the exporter's refresh path: the real :class:`UsageClient`
over an httpx ``MockTransport`` that returns those bytes (pydantic validation
and the sums of :func:`summarize`), then :meth:`PeriodLedger.apply` (caps and
the never-decreasing guard). It also times the three steps alone.

``memory FILE`` builds a real :class:`UsageExporter` (no HTTP server) whose
transport returns the body, runs its first refresh, renders ``/metrics`` in
both formats as the first scrapes would, drops the body and reports the peak
RSS (``ru_maxrss``) and the steady RSS after (``VmRSS``).

Both print one JSON document on stdout.
"""

from __future__ import annotations

import ctypes
import gc
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

import httpx
from pydantic import SecretStr

from bench.procs import API_KEY, API_SECRET, read_proc_status
from bench.scrape import PROMETHEUS_ACCEPT
from bench.workload import refresh_window
from exporter.config.load import build_settings
from exporter.core.account import AccountConfig
from exporter.core.ledger import LedgerResult, PeriodLedger
from exporter.core.period import PeriodWindow
from exporter.upstream.client import UsageClient
from exporter.upstream.schema import UsageResponse
from exporter.upstream.summing import summarize

UPSTREAM = "http://upstream.invalid/v1"
CAP = 5000  # high enough that nothing is folded into __other__


def _transport(body: Callable[[], bytes]) -> httpx.MockTransport:
    """The body for GET /usages; the team endpoints answer 404, as for a key that cannot
    read them, so that what is measured is the usages' refresh alone."""
    def handle(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/usages"):
            return httpx.Response(404, json={"message": "not found"})
        return httpx.Response(200, content=body(), headers={"Content-Type": "application/json"})
    return httpx.MockTransport(handle)


def _returning(body: bytes) -> Callable[[], bytes]:
    return lambda: body


def _timed(work: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    gc.collect()  # every measurement starts from the same heap state
    started = time.perf_counter()
    result = work(*args)
    return time.perf_counter() - started, result


def _refresh(client: UsageClient, ledger: PeriodLedger, account: AccountConfig,
             window: PeriodWindow) -> LedgerResult:
    """What a refresh does with the body: client (validation, sums), then the ledger."""
    return ledger.apply(client.fetch_window(account, window).snapshot)


def timing(repeats: int, files: list[str]) -> list[dict[str, Any]]:
    account = AccountConfig(name="default", api_key=API_KEY,
                            api_secret=SecretStr(API_SECRET))
    window = refresh_window()
    results = []
    for name in files:
        body = Path(name).read_bytes()
        client = UsageClient(UPSTREAM, 30.0, transport=_transport(_returning(body)))
        ledger = PeriodLedger(CAP, CAP)
        times: dict[str, list[float]] = {k: [] for k in
                                         ("json_loads", "refresh", "validate", "validate_gc_off",
                                          "summarize", "ledger")}
        for _ in range(repeats):
            # The floor and the refresh alternate, so that both see the same noise.
            times["json_loads"].append(_timed(json.loads, body)[0])
            times["refresh"].append(_timed(_refresh, client, ledger, account, window)[0])
            # The steps alone, to say where the time goes.
            seconds, parsed = _timed(UsageResponse.model_validate_json, body)
            times["validate"].append(seconds)
            del parsed
            # Diagnosis only: how much of validation alone is the cyclic GC
            # scanning the objects it creates (the exporter never turns it off).
            gc.disable()
            try:
                seconds, parsed = _timed(UsageResponse.model_validate_json, body)
            finally:
                gc.enable()
            times["validate_gc_off"].append(seconds)
            seconds, snapshot = _timed(summarize, parsed, window)
            times["summarize"].append(seconds)
            times["ledger"].append(_timed(ledger.apply, snapshot)[0])
            del parsed, snapshot
        client.close()
        results.append({"bytes": len(body), **{k: median(v) for k, v in times.items()}})
    return results


def memory(file: str) -> dict[str, Any]:
    # Everything a serving exporter imports, before the baseline is read.
    from exporter.live.app import create_app
    from exporter.live.service import build_exporter
    from exporter.web.server import create_server  # noqa: F401 - imported when serving

    gc.collect()
    baseline = read_proc_status()["VmRSS"]
    held = [Path(file).read_bytes()]
    size = len(held[0])
    settings = build_settings(
        {"scenario.api-url": UPSTREAM, "limits.max-models": str(CAP),
         "limits.max-users": str(CAP), "web.listen-address": "127.0.0.1:0"},
        {"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": API_SECRET})
    exporter = build_exporter(settings, transport=_transport(lambda: held[0]),
                             spawn=lambda work: work())  # the refresh runs right here
    create_app(exporter)
    exporter.start()
    if not exporter.views()[0].up:
        raise SystemExit(f"the refresh failed: {exporter.views()[0].last_error}")
    peak_refresh = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    _, text = exporter.exposition.respond(None, None)
    _, packed = exporter.exposition.respond(PROMETHEUS_ACCEPT, "gzip")
    peak_all = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    held.clear()
    del text, packed
    gc.collect()
    steady = read_proc_status()["VmRSS"]
    # Diagnosis only: how much of the steady RSS is freed memory that glibc's
    # malloc keeps (the rest is live data and pymalloc arenas kept by survivors).
    # The exporter trims after each refresh; this trims again after the renders.
    trimmed = None
    try:
        ctypes.CDLL(None).malloc_trim(0)
        trimmed = read_proc_status()["VmRSS"]
    except (OSError, AttributeError):
        pass  # not glibc
    exporter.close()
    return {"bytes": size, "baseline_kib": baseline, "peak_refresh_kib": peak_refresh,
            "peak_kib": peak_all, "steady_kib": steady, "trimmed_kib": trimmed}


def main(argv: list[str]) -> None:
    if argv[0] == "timing":
        print(json.dumps(timing(int(argv[1]), argv[2:])))
    elif argv[0] == "memory":
        print(json.dumps(memory(argv[1])))
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
