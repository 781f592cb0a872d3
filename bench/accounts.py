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
import json
import math
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
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


def config_file(directory: Path, sizes: Sizes) -> Path:
    """The YAML of *sizes.accounts* accounts, each with its own project (to tell calls apart)."""
    path = directory / "accounts.yml"
    path.write_text(json.dumps({"accounts": [
        {"name": f"project-{index:03d}", "api_key": API_KEY, "api_secret": API_SECRET,
         "project_ids": [f"proj_{index:03d}"]} for index in range(sizes.accounts)]}))
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
        with FloorProcess(routes, BACKLOG,
                          EXPORTER_NODELAY) as floor:
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
    args = ("--config.file", str(config), "--cache.ttl", f"{ttl}s",
            "--team.refresh-interval", f"{ttl}s", "--upstream.max-requests-per-hour", "3600")
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
                                   "period": "month"}, {}, config_file(Path(tmp), sizes))
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accounts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short durations (CI)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-accounts-") as tmp:
        config = config_file(Path(tmp), sizes)
        demo = account(sizes.models, sizes.users)
        with FakeUpstream(demo, API_KEY, API_SECRET) as fake:
            scrapes = scrape_figures(fake, config, sizes)
        with FakeUpstream(demo, API_KEY, API_SECRET) as fake:
            calls = call_figures(fake, config, sizes)
    cpu = cpu_figures(sizes)
    print(report(sizes, args.quick, scrapes, calls, cpu, time.monotonic() - began))
    over = {TEAM_LABELS[e]: calls[f"team_{e}"] for e in TEAM_CALLS
            if calls[f"team_{e}"] > 1.0 + 1e-9}
    if over:
        raise BenchError("team endpoints called more than once per account per interval: "
                         + ", ".join(f"{name} {value:.2f}" for name, value in over.items()))
    return 0


def report(sizes: Sizes, quick: bool, scrapes: dict[str, float], calls: dict[str, float],
           cpu: dict[str, float], wall: float) -> str:
    rows = []
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
    exact = calls["max_per_ttl"] <= 1.0 + 1e-9 and calls["min_gap"] >= sizes.ttl_seconds * 0.99
    rows.append((f"upstream calls per account per TTL (TTL {sizes.ttl_seconds} s, "
                 f"scrape every 1 s, {sizes.ttls} TTLs)", "",
                 f"mean {calls['per_ttl']:.2f}, max {calls['max_per_ttl']:.2f}; "
                 f"shortest gap {calls['min_gap']:.1f} s", "", "1 (no split needed)",
                 _verdict(exact)))
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
