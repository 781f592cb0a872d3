"""The live exporter's one composition root: the data side, the web side, start and stop.

:func:`build_exporter` assembles the data side, a :class:`UsageExporter` (a
client shared by one refresher per account, the exporter's own series,
``/metrics``); :func:`serve` puts the web side in front of it (the application,
the web config, the HTTP server), starts it, and stops everything on SIGTERM or
SIGINT. Nothing else in the package constructs these parts.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.config.settings import Settings
from exporter.core.durations import format_duration
from exporter.core.errors import StartupError
from exporter.core.period import monotonic_clock, wall_clock
from exporter.core.shard import shard_of
from exporter.live.app import create_app
from exporter.live.exporter import UsageExporter
from exporter.live.scheduler import (
    AccountRefresher,
    RefreshPolicy,
    Spawn,
    limit_concurrency,
    spawn_thread,
)
from exporter.live.team import TeamRefresher
from exporter.metrics.business import CollectorOptions
from exporter.metrics.exposition import Exposition
from exporter.metrics.own import Telemetry
from exporter.upstream.client import UsageClient
from exporter.upstream.team import TeamReader

log = logging.getLogger("exporter")

# Refreshes of different accounts running at once: enough to keep two cores and
# the network busy, few enough not to hit upstream with every account together.
MAX_CONCURRENT_REFRESHES = 4
# With many accounts, one slot per ACCOUNTS_PER_SLOT of them, up to MOST_CONCURRENT_REFRESHES.
# At the defaults an account makes a call per TTL (5 min) and 3 to 5 per team read (15 min):
# at most 0.009 calls a second, so 64 accounts keep a slot busy 57% of the time when a call
# takes a second; and 1,000 accounts' first data take a quarter of the time 4 slots take.
ACCOUNTS_PER_SLOT = 64
MOST_CONCURRENT_REFRESHES = 16


def concurrent_refreshes(accounts: int) -> int:
    """How many refreshes of *accounts* accounts may run at the same time."""
    return min(MOST_CONCURRENT_REFRESHES,
               max(MAX_CONCURRENT_REFRESHES, math.ceil(accounts / ACCOUNTS_PER_SLOT)))


def build_exporter(settings: Settings, *, transport: httpx.BaseTransport | None = None,
                   clock: Callable[[], float] = monotonic_clock,
                   wall: Callable[[], float] = wall_clock,
                   spawn: Spawn = spawn_thread) -> UsageExporter:
    """The data side for *settings*: one client shared by one refresher per account that
    this process's ``--shard`` owns.

    *transport* replaces the network (the demo upstream, tests); *clock*, *wall*
    and *spawn* are the time and the threads the refreshes are given.
    """
    shard = settings.shard
    elsewhere = {a.name: shard_of(a.name, shard.count) for a in settings.accounts
                 if not shard.owns(a.name)}
    settings = settings.model_copy(update={"accounts": tuple(
        a for a in settings.accounts if shard.owns(a.name))})
    registry = CollectorRegistry(auto_describe=False)
    telemetry = Telemetry(registry, [a.name for a in settings.accounts])
    client = UsageClient(settings.api_url, settings.upstream_timeout, transport=transport,
                         record=telemetry.record_request, monotonic=clock, wall=wall,
                         ca_file=settings.upstream_ca_file)
    limited = limit_concurrency(spawn, concurrent_refreshes(len(settings.accounts)))
    policy = RefreshPolicy(
        ttl=settings.cache_ttl, period=settings.period, anchor_day=settings.period_anchor_day,
        max_requests_per_hour=settings.max_requests_per_hour,
        max_models=settings.max_models, max_users=settings.max_users)
    refreshers = [AccountRefresher(account, client.fetch_window, telemetry, policy,
                                   clock=clock, wall=wall, spawn=limited)
                  for account in settings.accounts]
    teams = [TeamRefresher(r.account, TeamReader(client, r.account, settings.max_users),
                           r.cap, settings.team_refresh_interval, reserve=r.next_calls,
                           period=r.period, on_done=r.maybe_refresh,
                           clock=clock, wall=wall, spawn=limited)
             for r in refreshers]
    for refresher, team in zip(refreshers, teams, strict=True):
        refresher.shared_per_hour = team.calls_per_hour
    # Team figures outlive a few failed refreshes of their own, whatever the interval.
    team_max_stale = max(settings.cache_max_stale, 3 * settings.team_refresh_interval)
    options = CollectorOptions(max_stale=settings.cache_max_stale, period=settings.period,
                               user_identity=settings.user_identity,
                               team_max_stale=team_max_stale)
    exposition = Exposition(
        lambda: [r.view for r in refreshers], registry, options,
        wall=wall, own_generation=lambda: telemetry.generation,
        teams=lambda: [t.view for t in teams])
    # /probe?account=NAME: that account's series alone, rendered once per change of its view.
    probes = {r.account.name: _probe(r, t, options, wall)
              for r, t in zip(refreshers, teams, strict=True)}
    return UsageExporter(settings, registry, telemetry, client, refreshers, exposition, clock,
                         teams, probes, elsewhere)


def _probe(refresher: AccountRefresher, team: TeamRefresher, options: CollectorOptions,
           wall: Callable[[], float]) -> Exposition:
    """``/probe`` of one account: its business and team series, none of the exporter's
    own (which stay on ``/metrics``); rendered again only when its views change."""
    return Exposition(lambda: [refresher.view], None, options, wall=wall,
                      own_generation=lambda: 0, teams=lambda: [team.view])


def serve(settings: Settings, transport: httpx.BaseTransport | None = None) -> bool:
    """Serve until SIGTERM or SIGINT; True once stopped cleanly.

    A bad web config raises :class:`~exporter.core.errors.ConfigError`, a listen
    address that cannot be bound :class:`StartupError`, both before serving.
    """
    from exporter.web.server import ServerLimits, create_server, serve_in_thread

    app: Any
    ssl_context = None
    security = None
    exporter = build_exporter(settings, transport=transport)
    if settings.accounts and not exporter.settings.accounts:
        log.warning("this shard owns none of the accounts", extra={"fields": {
            "shard": str(settings.shard), "accounts": len(settings.accounts),
            "hint": "fewer shards than accounts, or accounts whose names hash elsewhere"}})
    app = create_app(exporter)
    if settings.web_config_file is not None:
        from exporter.web.security import HEALTH_PATHS, WebSecurity

        open_paths = HEALTH_PATHS if settings.web_health_without_auth else frozenset()
        security = WebSecurity.from_file(str(settings.web_config_file), open_paths=open_paths)
        ssl_context = security.ssl_context()
        app = security.wrap(app)
    try:
        server = create_server(settings.listen_address, app, ssl_context, ServerLimits(
            header_timeout=settings.web_header_timeout, max_threads=settings.web_max_threads))
    except OSError as exc:
        raise StartupError(f"--web.listen-address {settings.listen_address}: "
                           f"{exc.strerror or exc}") from None

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if security is not None:
        web_security = security

        def on_hangup(signum: int, frame: FrameType | None) -> None:
            # Reload off the signal handler: it may wait for a reload in progress.
            threading.Thread(target=web_security.reload, name="sighup", daemon=True).start()

        signal.signal(signal.SIGHUP, on_hangup)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    log.info("listening", extra={"fields": {
        "address": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "port": port, "tls": ssl_context is not None, "version": __version__,
        "accounts": ",".join(a.name for a in exporter.settings.accounts),
        "shard": str(settings.shard), "demo": settings.demo,
        "cache_ttl": format_duration(settings.cache_ttl)}})
    exporter.start()
    thread = serve_in_thread(server)
    stop.wait()
    log.info("shutting down")
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    exporter.close()
    return True
