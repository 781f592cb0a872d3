"""The first scrapes after start-up: ``python -m bench.startup [--quick]``.

One exporter of 1,000 accounts of 50 models (``--quick``: 60 accounts of 5 models)
starts against the loopback fake, and is scraped at once as Prometheus scrapes it
(OpenMetrics, gzip, ``X-Prometheus-Scrape-Timeout-Seconds: 10``), then every 10 s
(``--quick``: a 2 s timeout, every 2 s), until every account is served. Measured:

* **each scrape's duration** against the scrape timeout (goal: every one within it);
* **accounts served** by each scrape (``scenario_up`` series): what was ready;
* **time until every account is served**, from the exporter's start.

A first scrape waits for first data only as long as leaves it the time to encode the
accounts that have changed, encodes them until 80% of the timeout, and serves the
others as they were last encoded: the scrapes stay within the timeout while more
accounts are served each time.
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

from bench.procs import API_KEY, API_SECRET, BenchError, start_exporter
from bench.run import METRICS
from bench.scrape import PROMETHEUS_ACCEPT
from bench.workload import account, accounts_file
from testkit.fake_upstream import FakeUpstream
from testkit.web import http_get


@dataclass(frozen=True)
class Sizes:
    accounts: int
    models: int
    users: int
    timeout: float  # the scrape timeout Prometheus sends
    interval: float  # between the starts of two scrapes
    scrapes: int  # at most; the run ends when every account is served


FULL = Sizes(accounts=1000, models=50, users=20, timeout=10.0, interval=10.0, scrapes=60)
QUICK = Sizes(accounts=60, models=5, users=3, timeout=2.0, interval=2.0, scrapes=30)


def served_accounts(body: bytes) -> int:
    return sum(1 for line in gzip.decompress(body).splitlines()
               if line.startswith(b"scenario_up{"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    sizes = QUICK if parser.parse_args(argv).quick else FULL
    headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip",
               "X-Prometheus-Scrape-Timeout-Seconds": f"{sizes.timeout:g}"}
    scrapes: list[tuple[float, float, int]] = []  # since start, duration, accounts served
    with FakeUpstream(account(sizes.models, sizes.users), API_KEY, API_SECRET) as fake, \
            tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        config = accounts_file(Path(tmp), sizes.accounts, API_KEY, API_SECRET)
        started = perf_counter()
        with start_exporter(fake.url, ("--config.file", config.as_posix())) as exporter:
            exporter.wait_for_line(lambda text: "listening" in text, 600)
            listening = perf_counter() - started
            while len(scrapes) < sizes.scrapes:
                begun = perf_counter()
                reply = http_get(exporter.port, METRICS, headers, timeout=60.0)
                if reply.status != 200:
                    raise BenchError(f"/metrics answered {reply.status}: {exporter.tail()}")
                scrapes.append((begun - started, perf_counter() - begun,
                                served_accounts(reply.body)))
                if scrapes[-1][2] == sizes.accounts:
                    break
                time.sleep(max(0.0, begun + sizes.interval - perf_counter()))
    if scrapes[-1][2] != sizes.accounts:
        raise BenchError(f"{scrapes[-1][2]} of {sizes.accounts} accounts served after "
                         f"{len(scrapes)} scrapes")
    slowest = max(duration for _, duration, _ in scrapes)
    print(f"\n{sizes.accounts} accounts x {sizes.models} models in one exporter, listening "
          f"{listening:.1f}s after its start; scraped as Prometheus does (OpenMetrics, gzip, "
          f"a {sizes.timeout:g}s timeout) every {sizes.interval:g}s\n")
    print("| scrape at (s since start) | duration | accounts served |\n| --- | --- | --- |")
    for at, duration, served in scrapes:
        print(f"| {at:.1f} | {duration:.2f} s | {served} |")
    print("\n| figure | measured | goal | result |\n| --- | --- | --- | --- |")
    print(f"| slowest scrape | {slowest:.2f} s | < {sizes.timeout:g} s | "
          f"{'met' if slowest < sizes.timeout else '**missed**'} |")
    print(f"| every account served | {scrapes[-1][0] + scrapes[-1][1]:.1f} s after the start, "
          f"scrape {len(scrapes)} |  | measured |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
