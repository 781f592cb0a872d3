"""The team refresher: one account's plan, prepaid units, keys, members and projects.

Every ``--team.refresh-interval`` (15 minutes by default), a scrape that finds
the figures due starts one background refresh, single-flight as for usages,
which reads the team's limits, the team and its projects (:mod:`exporter.upstream.team`).
Its calls are counted by the account's hourly cap, shared with usages, and a
refresh starts only when the cap has room for all of them and, besides, for the
next refresh of usages: usages come first.

Which team: the account's ``team_id``; without one, ``GET /teams`` decides: the
one team the key sees, or, when it sees several, none, and the ids are listed
(log and landing page) for the user to choose.

Each endpoint fails alone: a 403 (the key lacks the team scope), a 404 (no such
team) or any other failure marks that endpoint down, keeps its last good
figures, logs once until it recovers, and waits out its own back-off before it
is called again. Usages are never touched.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from exporter.core.account import AccountConfig
from exporter.core.billing import AccountPeriod
from exporter.core.errors import FailureReason, UpstreamError
from exporter.core.period import monotonic_clock, wall_clock
from exporter.core.team import PROJECTS, TEAM, TEAM_ENDPOINTS, TEAM_LIMITS, TeamView
from exporter.live.scheduler import Spawn, spawn_thread
from exporter.upstream.politeness import HOUR, RequestCap, backoff_delay
from exporter.upstream.team import TeamReader

log = logging.getLogger("exporter.team")

# After the hourly cap refused a call: when to try again (the cap frees a call
# at a time as the hour slides).
CAP_RETRY_SECONDS = 60.0
_PATHS = {TEAM_LIMITS: "GET /teams/{id}/limits", TEAM: "GET /teams/{id}",
          PROJECTS: "GET /projects"}


@dataclass
class _Endpoint:
    failures: int = 0
    not_before: float = 0.0  # clock time
    logged: bool = False  # the current failure streak has been logged


class _CapReached(Exception):
    """The hourly cap refused a call: the refresh stops and is tried again soon."""


class TeamRefresher:
    """Keeps one account's team figures fresh, within the account's hourly cap."""

    def __init__(self, account: AccountConfig, reader: TeamReader, cap: RequestCap,
                 interval: float, *,
                 reserve: Callable[[], int] = lambda: 0,
                 period: AccountPeriod | None = None,
                 on_done: Callable[[], object] = lambda: None,
                 clock: Callable[[], float] = monotonic_clock,
                 wall: Callable[[], float] = wall_clock,
                 spawn: Spawn = spawn_thread,
                 rng: random.Random | None = None) -> None:
        self.account = account
        self._reader = reader
        self._cap = cap
        self._interval = interval
        self._reserve = reserve  # calls the cap must keep for the next refresh of usages
        # The account's period, told the billing period; on_done starts the usages'
        # refresh that waited for it (once: later refreshes of usages need no call).
        self._period = period or AccountPeriod()
        self._on_done = on_done
        self._clock = clock
        self._wall = wall
        self._spawn = spawn
        self._rng = rng or random.Random()
        self._team_id = account.team_id  # configured, or once discovered
        self._endpoints = {name: _Endpoint() for name in TEAM_ENDPOINTS}
        self._project_pages = 1
        self._lock = threading.Lock()
        self._in_flight = False
        self._next = 0.0  # clock time of the next refresh
        self._view = TeamView(account.name, team_id=account.team_id)

    @property
    def view(self) -> TeamView:
        """The team figures currently served, without triggering anything."""
        return self._view

    def due(self, now: float) -> bool:
        """Whether a refresh may be due at *now* (a hint read without the lock)."""
        return not self._in_flight and now >= self._next

    def calls_per_hour(self) -> int:
        """The calls an hour this refresher makes at its interval, when nothing fails."""
        per_refresh = 1 if self._team_id is None else 2 + self._project_pages
        return math.ceil(HOUR / self._interval) * per_refresh

    def planned_calls(self, now: float) -> int:
        """The calls the next refresh would make: discovery, then each endpoint whose
        back-off is over (projects: as many pages as last time)."""
        if self._team_id is None:  # discovery first; the endpoints follow if it finds one
            return 1 if now >= self._endpoints[TEAM].not_before else 0
        calls = 0
        for name, state in self._endpoints.items():
            if now >= state.not_before:
                calls += self._project_pages if name == PROJECTS else 1
        return calls

    def maybe_refresh(self) -> bool:
        """Start a refresh if one is due and the hourly cap has room for all its calls."""
        with self._lock:
            now = self._clock()
            if self._in_flight or now < self._next:
                return False
            calls = self.planned_calls(now)
            if calls == 0:  # every endpoint waits out a back-off
                self._next = min(s.not_before for s in self._endpoints.values())
                return False
            # Usages first: a cap too small for both leaves the team figures unread.
            start = self._cap.has_room(calls + self._reserve())
            self._in_flight = start
        if start:
            self._spawn(self._refresh)
        elif not self._period.settled:  # usages must not wait for a read that cannot start
            self._period.settle()
            self._on_done()
        return start

    def _refresh(self) -> None:
        waited = not self._period.settled
        view = self._view
        retry = self._interval
        try:
            team_id, view = self._which_team(view)
            if team_id is not None:
                for name in TEAM_ENDPOINTS:
                    if self._clock() >= self._endpoints[name].not_before:
                        view = self._read(name, team_id, view)
        except _CapReached:
            retry = CAP_RETRY_SECONDS
        except Exception:  # a bug must not stop the team figures for good
            log.exception("team refresh crashed", extra={"fields": {
                "account": self.account.name}})
        with self._lock:
            self._view = replace(view, version=self._view.version + 1)
            self._next = self._clock() + retry
            self._in_flight = False
        if waited:  # the first read: the usages' refresh waited for it
            self._period.settle()
            self._on_done()

    def _which_team(self, view: TeamView) -> tuple[str | None, TeamView]:
        if self._team_id is not None:
            return self._team_id, view
        if self._clock() < self._endpoints[TEAM].not_before:
            return None, view
        try:
            teams = self._reader.teams(self._cap.try_acquire)
        except UpstreamError as exc:
            return None, self._failed(TEAM, exc, view, "GET /teams")
        view = self._succeeded(TEAM, view)
        ids = tuple(sorted(team_id for team_id, _ in teams))
        if len(ids) == 1:
            self._team_id = ids[0]
            log.info("team found", extra={"fields": {"account": self.account.name,
                                                     "team_id": ids[0]}})
            return ids[0], replace(view, team_id=ids[0], candidates=())
        if ids != view.candidates:
            log.warning("the key sees several teams: set team_id for this account to read "
                        "its plan and caps" if ids else "the key sees no team",
                        extra={"fields": {"account": self.account.name,
                                          "team_ids": ",".join(ids)}})
        return None, replace(view, candidates=ids)

    def _read(self, name: str, team_id: str, view: TeamView) -> TeamView:
        permit = self._cap.try_acquire
        now = self._wall()
        try:
            if name == TEAM_LIMITS:
                limits = self._reader.limits(team_id, permit)
                self._period.learn(limits.period_start, limits.period_end, now)
                view = replace(view, limits=limits, limits_at=now)
            elif name == TEAM:
                view = replace(view, details=self._reader.team(team_id, permit),
                               details_at=now)
            else:
                projects, pages = self._reader.projects(team_id, permit)
                self._project_pages = pages
                view = replace(view, projects=projects, projects_at=now)
        except UpstreamError as exc:
            return self._failed(name, exc, view, _PATHS[name].replace("{id}", team_id))
        return self._succeeded(name, view)

    def _succeeded(self, name: str, view: TeamView) -> TeamView:
        state = self._endpoints[name]
        if state.failures:
            log.info("team endpoint recovered", extra={"fields": {
                "account": self.account.name, "endpoint": name}})
        state.failures, state.not_before, state.logged = 0, 0.0, False
        return replace(view, endpoints={**view.endpoints, name: True})

    def _failed(self, name: str, exc: UpstreamError, view: TeamView, call: str) -> TeamView:
        if exc.reason is FailureReason.REQUEST_CAP:
            raise _CapReached
        state = self._endpoints[name]
        state.failures += 1
        delay = backoff_delay(state.failures, self._rng, exc.retry_after)
        state.not_before = self._clock() + delay
        if not state.logged:
            state.logged = True
            log.warning("team endpoint failed", extra={"fields": {
                "account": self.account.name, "endpoint": name, "call": call,
                "error": _explain(exc), "retry_in_seconds": round(delay, 1)}})
        return replace(view, endpoints={**view.endpoints, name: False})


def _explain(exc: UpstreamError) -> str:
    if exc.status == 403:
        return ("the API key lacks the scope to read this team endpoint (HTTP 403): give "
                "the key the team scope, or ignore this: usages are not affected")
    if exc.status == 404:
        return "no such team (HTTP 404): check team_id for this account"
    return str(exc)
