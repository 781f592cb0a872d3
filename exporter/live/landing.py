"""The landing page (``GET /``): what this is, how each account is doing, and its bill.

Two tables, both from what the exporter already holds (no I/O): the accounts'
upstream status, and the bill as the team's limits said it (billing period,
Creative Units used against the allowance, the projection at the period's end,
prepaid units left and their next expiry). An account without those figures
says why in one cell. Every value is escaped; the page has no script and no
external resource.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime, timezone

from exporter import __version__
from exporter.core.durations import format_duration
from exporter.core.team import TEAM, TEAM_LIMITS, PlanLimits, TeamView, prepaid_at
from exporter.live.exporter import UsageExporter

DAY = 86400.0
_SCOPE_HINT = "a 403 means the key lacks the team scope; see the log"
PROJECTION_NOTE = (
    "At period end: the Creative Units used so far plus, for the rest of the billing "
    "period, the pace so far (used &divide; time elapsed since the period started).")


def _moment(timestamp: float, seconds: bool = False) -> str:
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime(fmt)


def _when(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    return f"{_moment(timestamp, seconds=True)} UTC ({now - timestamp:.0f}s ago)"


def _cu(value: float) -> str:
    """Creative Units with thousands separators, the decimals upstream gave (at most 2)."""
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _days(seconds: float) -> str:
    return f"{seconds / DAY:.1f} days"


def _team_cell(team: TeamView | None) -> str:
    """Which team the account's plan and caps come from, and which endpoints fail."""
    if team is None:
        return ""
    if team.candidates:
        return f"the key sees several teams, set team_id to one of: {', '.join(team.candidates)}"
    if team.team_id is None:
        return "not found yet" if not team.endpoints else "no team readable"
    down = [name for name, up in team.endpoints.items() if not up]
    return team.team_id + (f" (cannot read: {', '.join(down)})" if down else "")


def no_bill_reason(team: TeamView | None) -> str | None:
    """Why the account shows no bill, in a few words; None when its limits were read."""
    if team is None:
        return "no team figures for this account"
    if team.limits is not None:
        return None
    if team.candidates:
        return "the key sees several teams: set team_id (see Team above)"
    if team.team_id is None:
        if TEAM not in team.endpoints:
            return "not read yet"
        if team.endpoints[TEAM]:
            return "the key sees no team"
        return f"GET /teams fails ({_SCOPE_HINT})"
    if TEAM_LIMITS not in team.endpoints:
        return "not read yet"
    return f"GET /teams/{team.team_id}/limits fails ({_SCOPE_HINT})"


def projection(limits: PlanLimits, at: float) -> float | None:
    """The CU used at the period's end if the pace so far (used / elapsed) goes on; *at* is
    when ``used`` was read. None without a period or a figure used, or before the start."""
    start, end, used = limits.period_start, limits.period_end, limits.used
    if start is None or end is None or used is None or at <= start:
        return None
    if at >= end:
        return used
    return used + used / (at - start) * (end - at)


def bill_cells(team: TeamView, now: float) -> list[str]:
    """The bill's cells after the account's name: period, used, projection, prepaid left,
    next expiry, when read. *team* has limits (see :func:`no_bill_reason`)."""
    limits = team.limits
    assert limits is not None
    start, end, allowance, used = (limits.period_start, limits.period_end, limits.allowance,
                                   limits.used)
    period = "not given"
    if start is not None and end is not None:
        left = f"{_days(end - now)} left" if now < end else "ended, the next is not read yet"
        period = f"{_moment(start)} – {_moment(end)} ({left})"
    spent = "not given"
    if used is not None and allowance:
        spent = f"{_cu(used)} of {_cu(allowance)} CU ({used / allowance:.1%})"
    elif used is not None:
        spent = f"{_cu(used)} CU (no allowance given)"
    prepaid = prepaid_at(limits.packs, now)
    at = team.limits_at if team.limits_at is not None else now
    projected = projection(limits, at)
    ahead = "unknown"
    if projected is not None:
        ahead = f"{projected:,.0f} CU"
        if allowance:
            ahead += f" ({projected / allowance:.0%} of the allowance"
            over = projected - allowance
            if over > 0:
                covered = "prepaid left covers it" if prepaid.remaining >= over else \
                    "more than the prepaid left"
                ahead += f"; {over:,.0f} CU over, {covered}"
            ahead += ")"
    expiry = "none" if not prepaid.remaining else "no expiry given"
    if prepaid.next_expiry is not None and prepaid.expiring_next is not None:
        expiry = (f"{_moment(prepaid.next_expiry)} UTC: {_cu(prepaid.expiring_next)} CU "
                  f"(in {_days(prepaid.next_expiry - now)})")
    read = _when(team.limits_at, now)
    if team.endpoints.get(TEAM_LIMITS) is False:
        read += "; the last call failed, these are the last good figures"
    return [period, spent, ahead, f"{_cu(prepaid.remaining)} CU", expiry, read]


def _cells(cells: Iterable[str]) -> str:
    return "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)


def bill_rows(exporter: UsageExporter, now: float) -> list[str]:
    """One row of the bill per account, in the order of the accounts' table."""
    teams = {t.account: t for t in (team.view for team in exporter.teams)}
    rows = []
    for view in exporter.views():
        name = html.escape(view.account.name)
        team = teams.get(view.account.name)
        reason = no_bill_reason(team)
        if reason is not None:
            body = f'<td colspan="6">{html.escape(reason)}</td>'
        else:
            assert team is not None
            body = _cells(bill_cells(team, now))
        rows.append(f'<tr><th scope="row">{name}</th>{body}</tr>')
    return rows


def landing_page(exporter: UsageExporter, now: float) -> bytes:
    """A small HTML page: what this is, where the metrics are, how each account is doing,
    and its bill."""
    path = html.escape(exporter.settings.telemetry_path)
    rows = []
    teams = {t.account: t for t in (team.view for team in exporter.teams)}
    moment = datetime.fromtimestamp(now, timezone.utc)
    periods = {r.account.name: r.period.describe(moment) for r in exporter.refreshers}
    for view in exporter.views():
        age = "no data"
        if view.snapshot is not None:
            age = f"{now - view.snapshot.window.end.timestamp():.0f}s"
        status = "up" if view.up else ("down" if view.attempted else "starting")
        rows.append("<tr>" + _cells((
            view.account.name, status, _when(view.last_success, now), age,
            view.last_error or "", _team_cell(teams.get(view.account.name)),
            periods.get(view.account.name, ""))) + "</tr>")
    demo = " (demo data)" if exporter.settings.demo else ""
    notice = exporter.cap_notice()
    cap_line = f"<p>{html.escape(notice)}</p>\n" if notice else ""
    interval = html.escape(format_duration(exporter.settings.team_refresh_interval))
    shard = exporter.settings.shard
    shard_line = "" if shard.count == 1 else (
        f"<p>Shard {shard} (--shard): {len(exporter.refreshers)} of the "
        f"{len(exporter.refreshers) + len(exporter.elsewhere)} configured accounts; the "
        f"others are served by the other shards.</p>\n")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Scenario Exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{padding:.2em 1em;text-align:left;vertical-align:top}}tr+tr>*{{border-top:1px solid #ddd}}
</style>
</head><body>
<h1>Scenario Exporter{demo}</h1>
<p>Prometheus exporter for Scenario usage and Creative Unit billing. Version {__version__}.</p>
<p><a href="{path}">Metrics</a> &middot; <a href="/sd">Targets (/sd)</a>
 &middot; <a href="/-/healthy">Health</a> &middot; <a href="/-/ready">Readiness</a></p>
{shard_line}
<h2>Accounts</h2>
<table><tr><th>Account</th><th>Upstream</th><th>Last refresh</th><th>Data age</th>
<th>Last error</th><th>Team</th><th>Counters' period (--period={html.escape(
    exporter.settings.period)})</th></tr>
{"".join(rows)}
</table>
{cap_line}<h2>Bill</h2>
<p>As the team's limits say it (GET /teams/{{id}}/limits, read every {interval}).
{PROJECTION_NOTE}</p>
<table><tr><th>Account</th><th>Billing period (UTC)</th><th>Used of the allowance</th>
<th>At period end, at the pace so far</th><th>Prepaid left</th><th>Next prepaid expiry</th>
<th>Limits read</th></tr>
{"".join(bill_rows(exporter, now))}
</table>
</body></html>
"""
    return page.encode()
