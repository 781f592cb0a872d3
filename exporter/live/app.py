"""The WSGI application: ``/metrics``, a landing page, health and readiness.

Built by :func:`create_app` around a :class:`UsageExporter`; it does no I/O of
its own beyond answering the request. ``/metrics`` is the exporter's
:meth:`~exporter.metrics.exposition.Exposition.respond`.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from exporter import __version__
from exporter.core.team import TeamView
from exporter.live.exporter import UsageExporter

if TYPE_CHECKING:  # wsgiref.types exists at run time from Python 3.11 only
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

DEFAULT_SCRAPE_TIMEOUT = 10.0
# Answer a first scrape a little before Prometheus gives up on it.
SCRAPE_TIMEOUT_MARGIN = 0.5


def first_scrape_wait(header: str | None) -> float:
    """How long a scrape may wait for first data, from X-Prometheus-Scrape-Timeout-Seconds."""
    try:
        timeout = float(header) if header else DEFAULT_SCRAPE_TIMEOUT
    except ValueError:
        timeout = DEFAULT_SCRAPE_TIMEOUT
    if not timeout > 0:  # also rejects NaN
        timeout = DEFAULT_SCRAPE_TIMEOUT
    # Leave half a second for rendering and the network, or 10% of short timeouts.
    return max(timeout - SCRAPE_TIMEOUT_MARGIN, timeout * 0.9)


def _when(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    moment = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{moment} ({now - timestamp:.0f}s ago)"


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


def landing_page(exporter: UsageExporter, now: float) -> bytes:
    """A small HTML page: what this is, where the metrics are, how each account is doing."""
    path = html.escape(exporter.settings.telemetry_path)
    rows = []
    teams = {t.account: t for t in (team.view for team in exporter.teams)}
    for view in exporter.views():
        age = "no data"
        if view.snapshot is not None:
            age = f"{now - view.snapshot.window.end.timestamp():.0f}s"
        status = "up" if view.up else ("down" if view.attempted else "starting")
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in (
                view.account.name, status, _when(view.last_success, now), age,
                view.last_error or "", _team_cell(teams.get(view.account.name)))) + "</tr>")
    demo = " (demo data)" if exporter.settings.demo else ""
    notice = exporter.cap_notice()
    cap_line = f"<p>{html.escape(notice)}</p>\n" if notice else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Scenario Exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em 1em;text-align:left}}</style>
</head><body>
<h1>Scenario Exporter{demo}</h1>
<p>Prometheus exporter for Scenario usage and Creative Unit billing. Version {__version__}.</p>
<p><a href="{path}">Metrics</a> &middot; <a href="/-/healthy">Health</a>
 &middot; <a href="/-/ready">Readiness</a></p>
<h2>Accounts</h2>
<table><tr><th>Account</th><th>Upstream</th><th>Last refresh</th><th>Data age</th>
<th>Last error</th><th>Team</th></tr>
{"".join(rows)}
</table>
{cap_line}</body></html>
"""
    return page.encode()


def create_app(exporter: UsageExporter) -> WSGIApplication:
    """The exporter's WSGI application."""
    metrics_path = exporter.settings.telemetry_path

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", b"Method not allowed\n",
                          extra=[("Allow", "GET, HEAD")], head=False)
        head = method == "HEAD"
        if path == metrics_path:
            exporter.prepare_scrape(
                first_scrape_wait(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")))
            names = set(parse_qs(environ.get("QUERY_STRING", "")).get("name[]", ()))
            headers, body = exporter.exposition.respond(
                environ.get("HTTP_ACCEPT"), environ.get("HTTP_ACCEPT_ENCODING"), names)
            return _reply(start_response, "200 OK", body, head=head, headers=headers)
        if path == "/":
            return _reply(start_response, "200 OK", landing_page(exporter, time.time()),
                          "text/html; charset=utf-8", head=head)
        if path == "/-/healthy":
            return _reply(start_response, "200 OK", b"Healthy\n", head=head)
        if path == "/-/ready":
            if exporter.ready():
                return _reply(start_response, "200 OK", b"Ready\n", head=head)
            return _reply(start_response, "503 Service Unavailable",
                          b"Not ready: waiting for the first refresh of every account\n",
                          head=head)
        return _reply(start_response, "404 Not Found", b"Not found\n", head=head)

    return app


def _reply(start_response: StartResponse, status: str, body: bytes,
           content_type: str = "text/plain; charset=utf-8",
           extra: list[tuple[str, str]] | None = None, head: bool = False,
           headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    """Send *body* with its length; *headers* (Content-Type included) replace the plain ones."""
    sent = headers or [("Content-Type", content_type), *(extra or [])]
    start_response(status, [*sent, ("Content-Length", str(len(body)))])
    return [] if head else [body]
