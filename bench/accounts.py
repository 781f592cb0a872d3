"""Many accounts in one process: ``python -m bench.accounts [--quick]``.

An agency or a studio with many projects-as-accounts runs one exporter for
100 accounts of 50 models each. Measured, against the loopback fake:

* **steady RSS** of the exporter process after its refreshes have run for a while;
* **warm scrape** of the 100 accounts' exposition (served from memory) against
  the floor: the same bytes from a minimal threading HTTP server;
* **refresh CPU per account**: the real client, ledger and cache of a
  :class:`UsageExporter` refreshing every account in this process, over an
  httpx ``MockTransport`` that returns the body of one account (so the HTTP
  server and the fake cost nothing), against ``json.loads`` of that body;
* **upstream calls per account per TTL**, with a short TTL and a scrape every
  second: each account's calls, told apart by its ``projectIds``;
* the same **on a simulated clock**: 1,000 accounts, a 5-minute TTL, a scrape every 30 s,
  0.3 s a call (``--simulate``: it alone; ``--accounts N``; ``--ttl S``: the real-time one);
* in the same run, **team calls per account per --team.refresh-interval** (set to
  the TTL): ``GET /teams``, ``/teams/{id}/limits``, ``/teams/{id}`` and ``/projects``
  (per page: the demo answers pages of at most 2 projects). Every account reads the
  same team with the same key, so the calls cannot be told apart by account: the
  figure is each endpoint's calls after the start-up read of every account, divided
  by the accounts and by the intervals since the first team call.

Exits 0 whatever the timing figures (CI runs ``--quick`` to keep this working); a
team endpoint called more than once per account per interval is an error
(:class:`BenchError`, after the table): the issue's bound, not a timing.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import httpx

from bench.procs import (
    API_KEY,
    API_SECRET,
    BenchError,
    FloorProcess,
    read_proc_status,
    start_exporter,
    wait_status,
)
from bench.run import EXPORTER_NODELAY, METRICS, READY_TIMEOUT, _ms, _table, _verdict
from bench.scrape import REQUESTS, warm_latency
from bench.workload import account
from exporter.config.load import build_settings
from exporter.core.period import current_window
from exporter.live.service import build_exporter
from exporter.upstream import demo_api
from exporter.upstream.demo_api import PROJECTS, TEAM, TEAM_LIMITS, TEAMS, Refused, route
from exporter.upstream.demo_team import MAX_PAGE_SIZE
from exporter.upstream.demo_team import PROJECTS as DEMO_PROJECTS
from exporter.web.server import BACKLOG
from testkit.fake_upstream import FakeUpstream
from testkit.web import http_get

STEADY_RSS_GOAL_MIB = 200
SCRAPE_RATIO_GOAL = 1.5
MIB = 1024
# The team endpoints as the fake routes them, and the calls each makes per read: one,
# or one per page for the projects (the demo's pages hold at most MAX_PAGE_SIZE).
TEAM_CALLS = {TEAMS: 1, TEAM_LIMITS: 1, TEAM: 1,
              PROJECTS: math.ceil(len(DEMO_PROJECTS) / MAX_PAGE_SIZE)}
TEAM_LABELS = {TEAM_LIMITS: "limits", TEAM: "team", PROJECTS: "projects", TEAMS: "teams"}


@dataclass(frozen=True)
class Sizes:
    accounts: int
    models: int
    users: int
    latency_requests: int
    ttl_seconds: int  # of the calls figure
    ttls: int  # how many TTLs the calls figure watches
    cpu_rounds: int  # refreshes of every account for the CPU figure


FULL = Sizes(accounts=100, models=50, users=20, latency_requests=300, ttl_seconds=20, ttls=5,
             cpu_rounds=5)
QUICK = Sizes(accounts=100, models=50, users=20, latency_requests=30, ttl_seconds=5, ttls=3,
              cpu_rounds=1)


@dataclass(frozen=True)
class Simulated:
    """The calls figure on a simulated clock: the default cap, team interval and period."""
    accounts: int = 1000
    ttl_seconds: float = 300.0
    scrape_seconds: float = 30.0
    ttls: int = 6  # watched, after two TTLs of start-up
    call_seconds: float = 0.3  # the simulated time of one upstream call


QUICK_SIMULATED = Simulated(accounts=200, ttls=3)


def config_file(directory: Path, accounts: int) -> Path:
    """The YAML of *accounts* accounts, each with its own project (to tell calls apart)."""
    path = directory / "accounts.yml"
    path.write_text(json.dumps({"accounts": [
        {"name": f"project-{index:03d}", "api_key": API_KEY, "api_secret": API_SECRET,
         "project_ids": [f"proj_{index:03d}"]} for index in range(accounts)]}))
    return path


def scrape_figures(fake: FakeUpstream, config: Path, sizes: Sizes) -> dict[str, float]:
    """Warm scrapes against the floor, and the RSS after them (a TTL longer than the run)."""
    out: dict[str, float] = {}
    with start_exporter(fake.url, ("--config.file", str(config), "--cache.ttl", "1h")) as exp:
        wait_status(exp, "/-/ready", READY_TIMEOUT)
        routes = {}
        for variant, headers in REQUESTS.items():
            reply = http_get(exp.port, METRICS, headers)
            status, response_headers, body = reply.status, reply.headers, reply.body
            if status != 200 or (variant == "text" and b"scenario_up{" not in body):
                raise BenchError(f"the exporter serves no data: {exp.tail()}")
            if variant == "text":
                ups = [line for line in body.decode().splitlines()
                       if line.startswith("scenario_up{")]
                if len(ups) != sizes.accounts or not all(u.endswith(" 1.0") for u in ups):
                    raise BenchError(f"not every account is up: {exp.tail()}")
            out[f"{variant}_bytes"] = len(body)
            routes[f"/{variant}"] = (body, {k: v for k, v in response_headers.items()
                                            if k in ("content-type", "content-encoding")})
        with FloorProcess(routes, BACKLOG, EXPORTER_NODELAY) as floor:
            for variant, headers in REQUESTS.items():
                out[f"{variant}_floor"], out[f"{variant}_exporter"] = warm_latency(
                    (floor.port, f"/{variant}"), (exp.port, METRICS), headers,
                    sizes.latency_requests)
        status_kib = read_proc_status(exp.pid)
        out["rss_mib"] = status_kib.get("VmRSS", 0) / MIB
        out["hwm_mib"] = status_kib.get("VmHWM", 0) / MIB
    return out


def call_figures(fake: FakeUpstream, config: Path, sizes: Sizes) -> dict[str, float]:
    """Upstream calls per account per TTL, with a scrape every second; the team calls per
    account per --team.refresh-interval (the TTL); the RSS after."""
    ttl = sizes.ttl_seconds
    # Room for twice usages' and the team's calls every TTL: a full cap would pace usages.
    cap = 2 * math.ceil(3600 / ttl) * (1 + sum(TEAM_CALLS.values()))
    args = ("--config.file", str(config), "--cache.ttl", f"{ttl}s",
            "--team.refresh-interval", f"{ttl}s", "--upstream.max-requests-per-hour", str(cap))
    with start_exporter(fake.url, args) as exp:
        wait_status(exp, "/-/ready", READY_TIMEOUT)
        began = time.time()
        deadline = time.monotonic() + ttl * sizes.ttls
        while time.monotonic() < deadline:
            http_get(exp.port, METRICS, REQUESTS["prometheus"])
            time.sleep(1.0)
        ended = time.time()
        rss = read_proc_status(exp.pid).get("VmRSS", 0) / MIB
    calls: dict[str, list[float]] = defaultdict(list)
    team: dict[str, list[float]] = {endpoint: [] for endpoint in TEAM_CALLS}
    with fake.state.lock:
        for request in fake.state.requests:
            if request.path.endswith("/usages"):
                calls[request.params.get("projectIds", "")].append(request.at)
            elif request.at < ended:
                try:
                    team[route(request.path).endpoint].append(request.at)
                except (Refused, KeyError):
                    raise BenchError(f"an unexpected call: {request.path}") from None
    if len(calls) != sizes.accounts:
        raise BenchError(f"{len(calls)} accounts called upstream, not {sizes.accounts}")
    # Calls after the first one (start-up), in the watched time; the gaps between
    # them (the first gap is shortened on purpose: it spreads the accounts).
    later = [sum(1 for t in times[1:] if began <= t < ended) for times in calls.values()]
    gaps = [b - a for times in calls.values() for a, b in zip(times[1:], times[2:],
                                                                 strict=False)]
    watched_ttls = (ended - began) / ttl
    return {"per_ttl": sum(later) / len(later) / watched_ttls,
            "max_per_ttl": max(later) / watched_ttls,
            "min_gap": min(gaps) if gaps else float("nan"), "rss_mib": rss,
            **team_call_figures(team, sizes.accounts, ttl, ended)}


def team_call_figures(times: dict[str, list[float]], accounts: int, interval: float,
                      ended: float) -> dict[str, float]:
    """Per team endpoint, its reads (calls / pages) after the start-up read of every
    account, per account per *interval*, over the time from the first team call to
    *ended*. After its start-up read an account reads an endpoint at most once per
    interval, so a correct exporter stays at or below 1 whenever its start-up read came."""
    first = min((t for calls in times.values() for t in calls), default=None)
    if first is None:
        raise BenchError("no team endpoint was called")
    intervals = (ended - first) / interval
    out = {"team_intervals": intervals}
    for endpoint, pages in TEAM_CALLS.items():
        reads = len(times[endpoint]) / pages
        if reads < accounts:
            raise BenchError(f"{reads:g} reads of {endpoint} for {accounts} accounts: not "
                             "every account read its team")
        out[f"team_{endpoint}"] = (reads - accounts) / accounts / intervals
        out[f"team_{endpoint}_calls"] = len(times[endpoint])
    return out


def cpu_figures(sizes: Sizes) -> dict[str, float]:
    """CPU seconds of one account's refresh in a real UsageExporter, and of json.loads."""
    demo = account(sizes.models, sizes.users)
    window = current_window(datetime.now(timezone.utc))
    body = json.dumps(demo.response(window.start, window.end), separators=(",", ":")).encode()
    transport = httpx.MockTransport(lambda request: httpx.Response(
        200, content=body, headers={"Content-Type": "application/json"}))
    with tempfile.TemporaryDirectory(prefix="bench-accounts-") as tmp:
        # The calendar month: the transport answers usages only, and with the billing
        # period (auto) a first refresh of usages waits for the team's limits.
        settings = build_settings({"scenario.api-url": "http://upstream.invalid/v1",
                                   "period": "month"}, {}, config_file(Path(tmp), sizes.accounts))
    hours = [0.0]  # the exporter's monotonic clock: an hour passes between rounds
    exporter = build_exporter(settings, transport=transport, spawn=lambda work: work(),
                             clock=lambda: hours[0] * 3600)
    try:
        refreshes = 0
        started = time.process_time()
        for _ in range(sizes.cpu_rounds):
            for refresher in exporter.refreshers:
                refreshes += refresher.maybe_refresh()
            hours[0] += 1
        refresh_cpu = (time.process_time() - started) / refreshes
        if not all(v.up for v in exporter.views()):
            raise BenchError("a refresh failed in the CPU figure")
    finally:
        exporter.close()
    started = time.process_time()
    for _ in range(refreshes):
        json.loads(body)
    return {"refresh": refresh_cpu, "json_loads": (time.process_time() - started) / refreshes,
            "bytes": len(body), "refreshes": refreshes}


class SimulatedTime:
    """Time for the data side: each spawned work runs here when its start comes, its clock
    moving *call_seconds* per upstream call, in build_exporter's own slots (a slot nobody
    waits for is freed when its last work starts, not ends: a little optimistic)."""

    def __init__(self, call_seconds: float) -> None:
        self.call_seconds, self.order = call_seconds, itertools.count()
        self.running = [0.0, 0]  # the start of the running work, and its calls so far
        self.starts: list[tuple[float, int, Callable[[], None]]] = []

    def now(self) -> float:
        return self.running[0] + self.running[1] * self.call_seconds

    def spawn(self, work: Callable[[], None]) -> None:
        heapq.heappush(self.starts, (self.now(), next(self.order), work))

    def run_until(self, at: float) -> None:
        while self.starts and self.starts[0][0] <= at:
            start, _, work = heapq.heappop(self.starts)
            self.running = [start, 0]
            work()
        self.running = [at, 0]


def simulated_row(sim: Simulated) -> tuple[str, ...]:
    """Usages' calls per account per TTL, and the start-up, on a simulated clock."""
    clock, calls, wall = SimulatedTime(sim.call_seconds), defaultdict(list), time.time()
    bodies: dict[str, bytes] = {}  # one per period start: the demo's sums cost more than a refresh
    inner = demo_api.demo_transport(account(3, 2), API_KEY, API_SECRET, now=lambda: (
        datetime.fromtimestamp(wall + clock.now(), timezone.utc)))

    def handle(request: httpx.Request) -> httpx.Response:
        clock.running[1] += 1
        if not request.url.path.endswith("/usages"):
            return inner.handle_request(request)
        calls[request.url.params.get("projectIds", "")].append(clock.now())
        start = request.url.params.get("startDate", "")
        if start not in bodies:
            bodies[start] = inner.handle_request(request).read()
        return httpx.Response(200, content=bodies[start])

    with tempfile.TemporaryDirectory(prefix="bench-accounts-") as tmp:
        settings = build_settings({"scenario.api-url": "http://upstream.invalid/v1",
                                   "cache.ttl": f"{sim.ttl_seconds:g}s"}, {},
                                  config_file(Path(tmp), sim.accounts))
    exporter = build_exporter(settings, transport=httpx.MockTransport(handle), clock=clock.now,
                              wall=lambda: wall + clock.now(), spawn=clock.spawn)
    began, ready = time.process_time(), []
    watched, end = 2 * sim.ttl_seconds, (2 + sim.ttls) * sim.ttl_seconds
    exporter.start()
    for scrape in range(math.floor(end / sim.scrape_seconds) + 1):  # the last at the end
        clock.run_until(scrape * sim.scrape_seconds)
        exporter.prepare_scrape(0)
        ready.append(sum(view.attempted for view in exporter.views()))
    exporter.close()
    per_ttl = [sum(watched <= t < end for t in times) / sim.ttls for times in calls.values()]
    gaps = [b - a for t in calls.values() for a, b in zip(t[1:], t[2:], strict=False)
            if a >= watched]
    mean, slack = sum(per_ttl) / len(per_ttl), 1 / sim.ttls + 1e-9  # one refresh in TTLs
    met = len(calls) == sim.accounts and abs(mean - 1) <= 0.1 and max(per_ttl) <= 1 + slack \
        and min(per_ttl) >= 1 - slack
    all_ready = ready.index(sim.accounts) * sim.scrape_seconds if sim.accounts in ready else -1
    return (f"simulated clock: upstream calls per account per TTL ({sim.accounts} accounts, "
            f"TTL {sim.ttl_seconds:g} s, scrape every {sim.scrape_seconds:g} s, {sim.ttls} "
            f"TTLs, {sim.call_seconds:g} s a call)", "",
            f"mean {mean:.2f}, min {min(per_ttl):.2f}, max {max(per_ttl):.2f}; gaps "
            f"{min(gaps):.0f}-{max(gaps):.0f} s; {ready[1]} accounts with data at "
            f"{sim.scrape_seconds:g} s, all at {all_ready:g} s",
            f"{time.process_time() - began:.0f} s CPU",
            "1 +- 10%, each account 1 +- 1/TTLs", _verdict(met))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accounts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short durations (CI)")
    parser.add_argument("--simulate", action="store_true", help="the simulated figure alone")
    parser.add_argument("--accounts", type=int, help="accounts of every figure")
    parser.add_argument("--ttl", type=int, help="TTL of the real-time calls figure (s)")
    args = parser.parse_args(argv)
    sizes, sim = (QUICK, QUICK_SIMULATED) if args.quick else (FULL, Simulated())
    sizes = replace(sizes, accounts=args.accounts or sizes.accounts,
                    ttl_seconds=args.ttl or sizes.ttl_seconds)
    sim = replace(sim, accounts=args.accounts or sim.accounts)
    began, simulated = time.monotonic(), simulated_row(sim)
    if args.simulate:
        print(_table(("figure", "", "measured", "simulated in", "goal", "result"), [simulated]))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-accounts-") as tmp:
        config = config_file(Path(tmp), sizes.accounts)
        demo = account(sizes.models, sizes.users)
        with FakeUpstream(demo, API_KEY, API_SECRET) as fake:
            scrapes = scrape_figures(fake, config, sizes)
        with FakeUpstream(demo, API_KEY, API_SECRET) as fake:
            calls = call_figures(fake, config, sizes)
    cpu = cpu_figures(sizes)
    print(report(sizes, args.quick, scrapes, calls, cpu, time.monotonic() - began, simulated))
    over = {TEAM_LABELS[e]: calls[f"team_{e}"] for e in TEAM_CALLS
            if calls[f"team_{e}"] > 1.0 + 1e-9}
    if over:
        raise BenchError("team endpoints called more than once per account per interval: "
                         + ", ".join(f"{name} {value:.2f}" for name, value in over.items()))
    return 0


def report(sizes: Sizes, quick: bool, scrapes: dict[str, float], calls: dict[str, float],
           cpu: dict[str, float], wall: float, simulated: tuple[str, ...]) -> str:
    rows: list[tuple[str, ...]] = []
    rss = max(scrapes["rss_mib"], calls["rss_mib"])
    rows.append((f"steady RSS, {sizes.accounts} accounts x {sizes.models} models", "",
                 f"{rss:.0f} MiB", "", f"<= {STEADY_RSS_GOAL_MIB} MiB",
                 _verdict(rss <= STEADY_RSS_GOAL_MIB)))
    for variant, label in (("text", "warm scrape, text format, no gzip (median)"),
                           ("prometheus", "warm scrape, OpenMetrics + gzip (median)")):
        floor, measured = scrapes[f"{variant}_floor"], scrapes[f"{variant}_exporter"]
        rows.append((f"{label}, {int(scrapes[f'{variant}_bytes']):,} B", _ms(floor),
                     _ms(measured), f"{measured / floor:.2f}x", f"<= {SCRAPE_RATIO_GOAL}x",
                     _verdict(measured / floor <= SCRAPE_RATIO_GOAL)))
    rows.append((f"refresh CPU per account ({int(cpu['bytes']):,} B body)",
                 f"{_ms(cpu['json_loads'])} (json.loads)", _ms(cpu["refresh"]),
                 f"{cpu['refresh'] / cpu['json_loads']:.2f}x", "", "measured"))
    # Each account keeps its cadence: one TTL on average, no gap under half a TTL.
    exact = abs(calls["per_ttl"] - 1) <= 0.1 and calls["min_gap"] >= sizes.ttl_seconds / 2
    rows.append((f"upstream calls per account per TTL (TTL {sizes.ttl_seconds} s, "
                 f"scrape every 1 s, {sizes.ttls} TTLs)", "",
                 f"mean {calls['per_ttl']:.2f}, max {calls['max_per_ttl']:.2f}; "
                 f"shortest gap {calls['min_gap']:.1f} s", "", "1 +- 10% (no split needed)",
                 _verdict(exact)))
    rows.append(simulated)
    team = {e: calls[f"team_{e}"] for e in TEAM_CALLS}
    rows.append((f"team calls per account per interval (--team.refresh-interval "
                 f"{sizes.ttl_seconds} s, scrape every 1 s, {calls['team_intervals']:.1f} "
                 "intervals)", "",
                 ", ".join(f"{TEAM_LABELS[e]} {v:.2f}" for e, v in team.items()), "",
                 f"<= 1 per endpoint (projects: per page, {TEAM_CALLS[PROJECTS]} pages)",
                 _verdict(all(v <= 1.0 + 1e-9 for v in team.values()))))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m bench.accounts" + (" --quick" if quick else "")
    return "\n".join([
        f"scenario-exporter, many accounts, {when}: `{command}`; took {wall:.0f} s.", "",
        _table(("figure", "floor (same run)", "measured", "ratio or fit", "goal", "result"),
               rows), "",
        f"- RSS after the warm scrapes {scrapes['rss_mib']:.0f} MiB (peak "
        f"{scrapes['hwm_mib']:.0f} MiB, the first refreshes of every account); after "
        f"{sizes.ttls} TTLs of refreshes {calls['rss_mib']:.0f} MiB.",
        "- team calls in that run: " + ", ".join(
            f"{TEAM_LABELS[e]} {calls[f'team_{e}_calls']:.0f}" for e in TEAM_CALLS)
        + f" for {sizes.accounts} accounts (start-up reads included; the figure counts "
        "the reads after them, per account per interval since the first team call).",
        f"- refresh CPU: {cpu['refreshes']:.0f} refreshes of a real UsageExporter over "
        "httpx's MockTransport (client, pydantic, sums, ledger, cache), in this process."])


if __name__ == "__main__":
    sys.exit(main())
