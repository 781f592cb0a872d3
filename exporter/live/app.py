"""The WSGI application: ``/metrics``, a landing page, health and readiness.

Built by :func:`create_app` around a :class:`UsageExporter`; it does no I/O of
its own beyond answering the request. ``/metrics`` is the exporter's
:meth:`~exporter.metrics.exposition.Exposition.respond`; the landing page is
:func:`exporter.live.landing.landing_page`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from exporter.live.exporter import UsageExporter
from exporter.live.landing import landing_page

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
