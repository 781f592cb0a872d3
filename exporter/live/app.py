"""The WSGI application: ``/metrics``, ``/probe``, ``/sd``, a landing page, health and
readiness.

Built by :func:`create_app` around a :class:`UsageExporter`; it does no I/O of
its own beyond answering the request. ``/metrics`` is the exporter's
:meth:`~exporter.metrics.exposition.Exposition.respond`; ``/probe?account=NAME``
the same for one account's series (the multi-target pattern of the blackbox
exporter), and ``/sd`` lists those targets for Prometheus' HTTP service discovery;
the landing page is :func:`exporter.live.landing.landing_page`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from exporter.live.exporter import UsageExporter
from exporter.live.landing import landing_page

if TYPE_CHECKING:  # wsgiref.types exists at run time from Python 3.11 only
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

PROBE_PATH = "/probe"
SD_PATH = "/sd"
DEFAULT_SCRAPE_TIMEOUT = 10.0
# Answer a first scrape a little before Prometheus gives up on it.
SCRAPE_TIMEOUT_MARGIN = 0.5
# The share of that time a scrape may spend encoding accounts; the rest encodes the
# teams and the exporter's own series, assembles and compresses: up to 2.6 s of a 9.5 s
# wait at 1,000 accounts × 50 models while their first refreshes run (bench.startup).
ENCODE_SHARE = 0.6


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
            started = time.monotonic()
            wait = first_scrape_wait(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"))
            accept = environ.get("HTTP_ACCEPT")
            # Wait for first data only as long as leaves the time to encode the accounts
            # that will have changed (at most half the wait); encode until ENCODE_SHARE of
            # it, and serve the accounts not encoded by then as they were.
            exporter.prepare_scrape(
                wait - exporter.exposition.render_reserve(accept, wait / 2))
            names = set(parse_qs(environ.get("QUERY_STRING", "")).get("name[]", ()))
            headers, body = exporter.exposition.respond(
                accept, environ.get("HTTP_ACCEPT_ENCODING"), names,
                deadline=started + wait * ENCODE_SHARE)
            return _reply(start_response, "200 OK", body, head=head, headers=headers)
        if path == PROBE_PATH:
            return _probe(exporter, environ, start_response, head)
        if path == SD_PATH:
            body = json.dumps(sd_targets(exporter, _address(exporter, environ)),
                              separators=(",", ":")).encode()
            return _reply(start_response, "200 OK", body, "application/json", head=head)
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


def _probe(exporter: UsageExporter, environ: WSGIEnvironment, start_response: StartResponse,
           head: bool) -> list[bytes]:
    """``/probe?account=NAME``: that account's series, as ``/metrics`` serves them."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    account = (query.get("account") or [""])[-1]
    probe = exporter.probes.get(account)
    if probe is None:
        return _reply(start_response, "404 Not Found",
                      (probe_refusal(exporter, account) + "\n").encode(), head=head)
    exporter.prepare_probe(
        account, first_scrape_wait(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")))
    headers, body = probe.respond(environ.get("HTTP_ACCEPT"),
                                  environ.get("HTTP_ACCEPT_ENCODING"),
                                  set(query.get("name[]", ())))
    return _reply(start_response, "200 OK", body, head=head, headers=headers)


def probe_refusal(exporter: UsageExporter, account: str) -> str:
    """One line: why this process serves no */probe* of *account*."""
    if not account:
        return "/probe needs ?account=NAME, one of the accounts of /sd"
    shown = account if len(account) <= 64 and account.isprintable() else repr(account[:64])
    shard = exporter.elsewhere.get(account)
    if shard is not None:
        this = exporter.settings.shard
        return (f"account {shown} belongs to shard {shard}/{this.count}; this exporter "
                f"serves shard {this}")
    return f"no account {shown} in this exporter's configuration"


def sd_targets(exporter: UsageExporter, address: str) -> list[dict[str, object]]:
    """Prometheus HTTP service discovery: one target group per account this process
    serves, scraped at ``/probe?account=NAME``."""
    return [{"targets": [address],
             "labels": {"account": name, "__param_account": name,
                        "__metrics_path__": PROBE_PATH}}
            for name in exporter.probes]


def _address(exporter: UsageExporter, environ: WSGIEnvironment) -> str:
    """Where Prometheus reaches this process: --web.external-address, else the Host the
    request for /sd came to."""
    if exporter.settings.external_address:
        return exporter.settings.external_address
    host = environ.get("HTTP_HOST") or ""
    if host and all(c.isalnum() or c in ".-:[]_" for c in host):
        return str(host)
    return f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '10097')}"


def _reply(start_response: StartResponse, status: str, body: bytes,
           content_type: str = "text/plain; charset=utf-8",
           extra: list[tuple[str, str]] | None = None, head: bool = False,
           headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    """Send *body* with its length; *headers* (Content-Type included) replace the plain ones."""
    sent = headers or [("Content-Type", content_type), *(extra or [])]
    start_response(status, [*sent, ("Content-Length", str(len(body)))])
    return [] if head else [body]
