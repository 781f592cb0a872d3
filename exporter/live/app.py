"""The WSGI application: ``/metrics``, a landing page, health and readiness.

Built by :func:`create_app` around a :class:`UsageExporter`; it does no I/O of
its own beyond answering the request.
"""

from __future__ import annotations

import gzip
import html
import re
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from exporter import __version__
from exporter.live.service import UsageExporter

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


# What a media range in Accept may say for the exposition formats; anything
# else in a range drops that range, as Prometheus' own servers fall back to the
# text format on a malformed Accept. Nothing else from the header reaches
# Content-Type.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+*-]+")
_PARAMETERS = {
    "version": re.compile(r"\d{1,3}\.\d{1,3}(?:\.\d{1,3})?"),
    "escaping": re.compile(r"allow-utf-8|underscores|dots|values"),
    "charset": re.compile(r"[A-Za-z0-9_-]{1,32}"),
    "q": re.compile(r"[01](?:\.\d{0,3})?"),
}


def negotiable_accept(header: str | None) -> str:
    """*header* reduced to the media ranges whose every parameter is well formed."""
    ranges: list[str] = []
    for part in (header or "").split(","):
        media, *params = (token.strip() for token in part.split(";"))
        if not _MEDIA_TYPE.fullmatch(media):
            continue
        kept = [media]
        for param in params:
            name, _, value = param.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            pattern = _PARAMETERS.get(name)
            if pattern is None or not pattern.fullmatch(value):
                break
            kept.append(f"{name}={value}")
        else:
            ranges.append(";".join(kept))
    return ",".join(ranges)


def gzip_wanted(header: str | None) -> bool:
    """Whether Accept-Encoding asks for gzip with a non-zero quality (``gzip;q=0`` refuses it)."""
    for part in (header or "").split(","):
        coding, *params = (token.strip() for token in part.split(";"))
        if coding.lower() != "gzip":
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        return quality > 0  # NaN is not > 0
    return False


def select_samples(body: bytes, names: set[str]) -> bytes:
    """Keep the samples named in *names* (``name[]=`` in the query), with their families' comments.

    prometheus_client's own handler restricts the registry to these sample
    names; both exposition formats write each family as its comment lines
    followed by its samples, so filtering the text gives the same result.
    """
    out: list[bytes] = []
    comments: list[bytes] = []
    for line in body.splitlines(keepends=True):
        if line.startswith(b"# EOF"):
            out.append(line)
        elif line.startswith(b"#"):
            if line.startswith(b"# HELP ") or not comments:
                comments = []
            comments.append(line)
        else:
            name = line.split(b"{", 1)[0].split(b" ", 1)[0].decode("utf-8", "replace")
            if name in names:
                out.extend(comments)
                comments = []
                out.append(line)
    return b"".join(out)


def _when(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    moment = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{moment} ({now - timestamp:.0f}s ago)"


def landing_page(exporter: UsageExporter, now: float) -> bytes:
    """A small HTML page: what this is, where the metrics are, how each account is doing."""
    path = html.escape(exporter.settings.telemetry_path)
    rows = []
    for view in exporter.views():
        age = "no data"
        if view.snapshot is not None:
            age = f"{now - view.snapshot.window.end.timestamp():.0f}s"
        status = "up" if view.up else ("down" if view.attempted else "starting")
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in (
                view.account.name, status, _when(view.last_success, now), age,
                view.last_error or "")) + "</tr>")
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
<th>Last error</th></tr>
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
            compress = gzip_wanted(environ.get("HTTP_ACCEPT_ENCODING"))
            names = set(parse_qs(environ.get("QUERY_STRING", "")).get("name[]", ()))
            body, content_type = exporter.renderer.render(
                negotiable_accept(environ.get("HTTP_ACCEPT")), compress and not names)
            if names:
                body = select_samples(body, names)
                if compress:
                    body = gzip.compress(body)
            extra = [("Content-Encoding", "gzip")] if compress else []
            extra.append(("Vary", "Accept, Accept-Encoding"))
            return _reply(start_response, "200 OK", body, content_type, extra, head)
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
           extra: list[tuple[str, str]] | None = None, head: bool = False) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))),
               *(extra or [])]
    start_response(status, headers)
    return [] if head else [body]
