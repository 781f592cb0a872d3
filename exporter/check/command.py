"""``scenario-exporter check``: one upstream call per account and a human summary.

What users run first to check their key: it prints the period-to-date spend,
the top models and the assets by kind, or the exact reason of the failure; then
which team endpoints the key can read, and what they say (billing period,
allowance, prepaid units, caps). A team endpoint the key cannot read is reported
but fails nothing: the exporter serves usages without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TextIO, TypeVar

import httpx

from exporter.config.settings import Settings
from exporter.core.billing import AccountPeriod
from exporter.core.errors import UpstreamError
from exporter.core.logs import mask
from exporter.core.team import PlanLimits, prepaid_at
from exporter.upstream.client import UsageClient
from exporter.upstream.pieces import fetch_in_pieces
from exporter.upstream.team import TeamReader

TOP_MODELS = 5
T = TypeVar("T")


def run_check(settings: Settings, transport: httpx.BaseTransport | None, out: TextIO) -> bool:
    """Check every configured account, printing to *out*; True when all answered."""
    client = UsageClient(settings.api_url, settings.upstream_timeout, transport=transport,
                         ca_file=settings.upstream_ca_file)
    failed = 0
    try:
        for account in settings.accounts:
            reader = TeamReader(client, account, settings.max_users)
            now = datetime.now(timezone.utc)
            period = AccountPeriod(settings.period, settings.period_anchor_day)
            probe = probe_team(reader, account.team_id)
            if isinstance(probe.limits, PlanLimits):
                period.learn(probe.limits.period_start, probe.limits.period_end,
                             now.timestamp())
            period.settle()
            window = period.window(now)
            assert window is not None  # settled above
            out.write(f"account {account.name} (key {mask(account.key())}), "
                      f"from {window.start:%Y-%m-%d %H:%M} UTC "
                      f"to {window.end:%Y-%m-%d %H:%M} UTC\n")
            out.write(f"  period: {period.describe(now)}\n")
            try:
                result = fetch_in_pieces(client.fetch_window, account, window)
            except UpstreamError as exc:
                failed += 1
                out.write(f"  FAILED ({exc.reason}): {exc}\n")
                continue
            snap = result.snapshot
            cost = sum(t.cost for t in snap.models.values())
            discount = sum(t.discount for t in snap.models.values())
            jobs = sum(t.jobs for t in snap.models.values())
            out.write(f"  OK: {result.requests} request(s), {result.body_bytes} bytes\n")
            out.write(f"  period-to-date spend: {cost:,.2f} CU "
                      f"(discounts {discount:,.2f} CU, {jobs:,.0f} jobs)\n")
            if account.budget_creative_units:
                share = 100 * cost / account.budget_creative_units
                out.write(f"  budget: {account.budget_creative_units:,.0f} CU, "
                          f"{share:.1f}% used\n")
            top = sorted(snap.models.items(), key=lambda kv: (-kv[1].cost, kv[0]))[:TOP_MODELS]
            if top:
                out.write(f"  top {len(top)} models by spend:\n")
                for model_id, totals in top:
                    name = snap.model_names.get(model_id, "")
                    label = f"{name} ({model_id})" if name else model_id
                    out.write(f"    {totals.cost:>14,.2f} CU  {label}\n")
            if snap.assets:
                kinds = ", ".join(f"{kind} {totals.assets:,.0f}"
                                  for kind, totals in sorted(snap.assets.items()))
                out.write(f"  assets created: {kinds}\n")
            priced = sorted(((name, usage) for name, usage in snap.usages.items()
                             if name in snap.priced_usages and usage.cost),
                            key=lambda item: (-abs(item[1].cost), item[0]))[:TOP_MODELS]
            if priced:
                out.write(f"  top {len(priced)} actions by CU (negative: credited):\n")
                for name, usage in priced:
                    out.write(f"    {usage.cost:>14,.2f} CU  {name}\n")
            if snap.quality_gates:
                verdicts = ", ".join(f"{verdict} {totals.assets:,.0f}"
                                     for verdict, totals in sorted(snap.quality_gates.items()))
                out.write(f"  quality gate: {verdicts}\n")
            check_team(reader, probe, out)
    finally:
        client.close()
    return not failed


def _day(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _attempt(call: Callable[[], T]) -> T | UpstreamError:
    try:
        return call()
    except UpstreamError as exc:
        return exc


def _report(name: str, result: T | UpstreamError, out: TextIO) -> T | None:
    """Print whether *name* could be read; its result, or None when it failed."""
    if isinstance(result, UpstreamError):
        why = {403: "the key lacks the scope", 404: "no such team"}.get(result.status or 0, "")
        out.write(f"  {name}: cannot read ({why + ': ' if why else ''}{result})\n")
        return None
    out.write(f"  {name}: readable\n")
    return result


@dataclass
class TeamProbe:
    """The team calls made before usages (which team, its limits: the billing period),
    kept for the report that follows them."""

    team_id: str | None
    teams: list[tuple[str, str]] | UpstreamError | None = None  # None: not asked
    limits: PlanLimits | UpstreamError | None = None


def probe_team(reader: TeamReader, team_id: str | None) -> TeamProbe:
    """Which team the key reads (the configured one, else the only one it sees), and
    its limits."""
    probe = TeamProbe(team_id)
    if team_id is None:
        probe.teams = _attempt(reader.teams)
        if isinstance(probe.teams, list) and len(probe.teams) == 1:
            probe.team_id = probe.teams[0][0]
    found = probe.team_id
    if found is not None:
        probe.limits = _attempt(lambda: reader.limits(found))
    return probe


def check_team(reader: TeamReader, probe: TeamProbe, out: TextIO) -> None:
    """Which team endpoints the key can read, and what they say, printed to *out*."""
    if probe.teams is not None:
        teams = _report("GET /teams", probe.teams, out)
        if teams is None:
            return
        if len(teams) != 1:
            listed = ", ".join(f"{name} ({tid})" for tid, name in teams) or "none"
            out.write(f"  the key sees {len(teams)} teams: {listed}; set team_id to read "
                      "the plan and caps of one\n")
            return
    team_id = probe.team_id
    if team_id is None or probe.limits is None:
        return
    limits = _report(f"GET /teams/{team_id}/limits", probe.limits, out)
    team = _report(f"GET /teams/{team_id}", _attempt(lambda: reader.team(team_id)), out)
    projects = _report("GET /projects", _attempt(lambda: reader.projects(team_id)[0]), out)
    if team is not None:
        out.write(f"  team {team.name} ({team.team_id}): plan {team.plan}, payment "
                  f"{team.payment_status or '?'}, subscription {team.subscription_status or '?'}"
                  f"; {len(team.keys)} API keys, {len(team.members)} members\n")
    if limits is not None:
        out.write(f"  billing period: {_day(limits.period_start)} to {_day(limits.period_end)}\n")
        if limits.allowance is not None and limits.used is not None:
            share = f" ({100 * limits.used / limits.allowance:.1f}%)" if limits.allowance else ""
            out.write(f"  plan allowance: {limits.allowance:,.0f} CU, used {limits.used:,.2f} CU"
                      f"{share}\n")
        left = prepaid_at(limits.packs, time.time())
        expiry = (f", next expiry {_day(left.next_expiry)} ({left.expiring_next:,.0f} CU)"
                  if left.next_expiry is not None and left.expiring_next is not None else "")
        out.write(f"  prepaid units left: {left.remaining:,.0f} CU{expiry}\n")
    if projects is not None:
        capped = sum(1 for p in projects.values() if p.max_consumption is not None)
        out.write(f"  projects: {len(projects)} ({capped} capped)\n")
