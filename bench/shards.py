"""Accounts split over exporter shards: ``python -m bench.shards [--quick]``.

10,000 accounts of 50 models over 10 processes started with ``--shard=I/10``, against
the loopback fake, at a 5-minute TTL (``--quick``: 40 accounts of 5 models over 2
shards at 5 s, to keep it working in CI). Every shard's ``/metrics`` is scraped every
30 s (``--quick``: every second), which makes the due refreshes happen, as a
Prometheus would. Measured:

* **steady RSS per shard** after the first refreshes and at the end;
* **refreshes per account per TTL** over the watched TTLs (goal 1 ± 0.1): the calls
  of each account (told apart by its project id) after its first, per TTL watched;
* **/probe p99** of one account against its floor: the same bytes from a minimal
  threading HTTP server, requests alternating between the two (goal ≤ 1.5x);
* **upstream calls per second**, all shards together, over the watched time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

from bench.procs import (
    API_KEY,
    API_SECRET,
    BenchError,
    FloorProcess,
    read_proc_status,
    start_exporter,
    wait_status,
)
from bench.run import EXPORTER_NODELAY, METRICS
from bench.scrape import REQUESTS
from bench.workload import account, accounts_file
from exporter.web.server import BACKLOG
from testkit.fake_upstream import FakeUpstream
from testkit.web import http_get

MIB = 1024
PROBE_RATIO_GOAL = 1.5
PER_TTL_GOAL = (0.9, 1.1)


@dataclass(frozen=True)
class Sizes:
    accounts: int
    shards: int
    models: int
    users: int
    ttl_seconds: int
    ttls: int  # TTLs watched after every shard is ready
    scrape_every: float
    probes: int  # /probe requests for the latency figure (and as many to the floor)
    ready_timeout: float
    # The team endpoints are not what is measured: read once, at start-up, in the run.
    team_interval_seconds: int = 3600


FULL = Sizes(accounts=10_000, shards=10, models=50, users=20, ttl_seconds=300, ttls=3,
             scrape_every=30.0, probes=300, ready_timeout=3600.0)
QUICK = Sizes(accounts=40, shards=2, models=5, users=3, ttl_seconds=5, ttls=3,
              scrape_every=1.0, probes=30, ready_timeout=120.0)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def probe_figures(port: int, account_name: str, requests: int) -> tuple[float, float, int]:
    """p99 of /probe of one account and of its floor (the same bytes), alternating."""
    path = f"/probe?account={account_name}"
    headers = REQUESTS["prometheus"]
    reply = http_get(port, path, headers)
    if reply.status != 200:
        raise BenchError(f"/probe answered {reply.status}")
    kept = {k: v for k, v in reply.headers.items() if k in ("content-type", "content-encoding")}
    with FloorProcess({"/probe": (reply.body, kept)}, BACKLOG, EXPORTER_NODELAY) as floor:
        times: dict[str, list[float]] = {"floor": [], "probe": []}
        targets = [("floor", floor.port, "/probe"), ("probe", port, path)]
        for index in range(requests + 5):
            for name, target_port, target_path in (targets if index % 2 else targets[::-1]):
                started = perf_counter()
                if http_get(target_port, target_path, headers).status != 200:
                    raise BenchError(f"{name} failed")
                if index >= 5:  # warmed up
                    times[name].append(perf_counter() - started)
    return percentile(times["floor"], 0.99), percentile(times["probe"], 0.99), len(reply.body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    with FakeUpstream(account(sizes.models, sizes.users), API_KEY, API_SECRET) as fake, \
            tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp, ExitStack() as stack:
        config = accounts_file(Path(tmp), sizes.accounts, API_KEY, API_SECRET)
        started = time.monotonic()
        shards = []
        for index in range(sizes.shards):
            # One shard after the other, as a rolling deployment starts them: ten shards'
            # first reads at once (10,000 usages and 40,000 team calls) would queue in the
            # one loopback fake past the client's timeout.
            shard = stack.enter_context(start_exporter(fake.url, (
                "--config.file", config.as_posix(), f"--shard={index}/{sizes.shards}",
                "--cache.ttl", f"{sizes.ttl_seconds}s",
                "--team.refresh-interval", f"{sizes.team_interval_seconds}s",
                # Room under the hourly cap for a refresh every TTL (the default, 60,
                # allows one a minute: the 5-minute TTL, not the quick one).
                "--upstream.max-requests-per-hour",
                str(max(60, 2 * 3600 // sizes.ttl_seconds)))))
            # Reading 10,000 accounts takes a while: the listening line comes late.
            shard.wait_for_line(lambda text: "listening" in text, sizes.ready_timeout)
            wait_status(shard, "/-/ready", sizes.ready_timeout)
            # As Prometheus asks (a format asked once stays encoded in the shard's memory).
            body = gzip.decompress(http_get(shard.port, METRICS, REQUESTS["prometheus"]).body)
            ups = [line for line in body.decode().splitlines()
                   if line.startswith("scenario_up{")]
            if not ups or not all(line.endswith(" 1.0") for line in ups):
                raise BenchError(f"not every account of a shard is up: {shard.tail()}")
            shards.append(shard)
        ready_seconds = time.monotonic() - started
        first_rss = [read_proc_status(s.pid).get("VmRSS", 0) / MIB for s in shards]
        began = time.time()
        deadline = time.monotonic() + sizes.ttl_seconds * sizes.ttls
        while time.monotonic() < deadline:
            tick = time.monotonic()
            for shard in shards:
                http_get(shard.port, METRICS, REQUESTS["prometheus"])
            time.sleep(max(0.0, sizes.scrape_every - (time.monotonic() - tick)))
        ended = time.time()
        end_rss = [read_proc_status(s.pid).get("VmRSS", 0) / MIB for s in shards]
        owner = random.Random(1).randrange(sizes.shards)
        listed = [g["labels"]["account"] for g in json.loads(
            http_get(shards[owner].port, "/sd", {}).body)]
        floor_p99, probe_p99, probe_bytes = probe_figures(shards[owner].port, listed[0],
                                                          sizes.probes)
    calls: dict[str, list[float]] = defaultdict(list)
    for request in fake.state.requests:
        if request.path.endswith("/usages"):
            calls[request.params.get("projectIds", "")].append(request.at)
    if len(calls) != sizes.accounts:
        raise BenchError(f"{len(calls)} accounts called upstream, not {sizes.accounts}")
    watched = (ended - began) / sizes.ttl_seconds
    later = [sum(1 for t in times[1:] if began <= t < ended) / watched
             for times in calls.values()]
    in_window = sum(1 for times in calls.values() for t in times if began <= t < ended)
    per_ttl = sum(later) / len(later)
    print(f"\n{sizes.accounts} accounts x {sizes.models} models over {sizes.shards} shards, "
          f"TTL {sizes.ttl_seconds}s, {watched:.1f} TTLs watched, /metrics of every shard "
          f"every {sizes.scrape_every:g}s; every shard ready after {ready_seconds:.0f}s\n")
    rows = [
        ("steady RSS per shard after the first refreshes (max)", f"{max(first_rss):.0f} MiB",
         "", "measured"),
        ("steady RSS per shard at the end (max / mean)",
         f"{max(end_rss):.0f} / {sum(end_rss) / len(end_rss):.0f} MiB", "", "measured"),
        ("refreshes per account per TTL (mean)", f"{per_ttl:.2f}", "1 ± 0.1",
         "met" if PER_TTL_GOAL[0] <= per_ttl <= PER_TTL_GOAL[1] else "**missed**"),
        ("refreshes per account per TTL (min / max)", f"{min(later):.2f} / {max(later):.2f}",
         "", "measured"),
        (f"/probe p99, {probe_bytes:,} bytes (floor {floor_p99 * 1000:.2f} ms)",
         f"{probe_p99 * 1000:.2f} ms = {probe_p99 / floor_p99:.2f}x", f"<= {PROBE_RATIO_GOAL}x",
         "met" if probe_p99 / floor_p99 <= PROBE_RATIO_GOAL else "**missed**"),
        ("upstream calls per second, all shards", f"{in_window / (ended - began):.1f}", "",
         "measured"),
    ]
    print("| figure | measured | goal | result |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
