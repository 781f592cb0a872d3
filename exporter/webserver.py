"""The HTTP transport: a threading WSGI server bound to the listen address.

One process, threads (prometheus_client's own server is built the same way);
TLS and authentication are layered on by :mod:`exporter.webconfig`.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

if TYPE_CHECKING:  # wsgiref.types exists at run time from Python 3.11 only
    from wsgiref.types import WSGIApplication

log = logging.getLogger("exporter.http")


class _QuietHandler(WSGIRequestHandler):
    """Request handler that logs through :mod:`logging` at debug level instead of stderr."""

    # Headers and body leave in separate writes; without TCP_NODELAY, Nagle's
    # algorithm and delayed ACKs add tens of milliseconds to small responses.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http request", extra={"fields": {"client": self.client_address[0],
                                                    "line": format % args}})


# Errors that only mean the client went away, spoke something else than TLS,
# or presented no acceptable certificate: not worth more than a debug line.
_CLIENT_ERRORS = (ssl.SSLError, ConnectionError, TimeoutError)


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """A WSGI server that answers each request in its own daemon thread."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver listens with a backlog of 5: a burst of connections (several
    # Prometheus replicas, a federation, a load balancer's probes) overflows it,
    # and each client left out waits for SYN retransmissions (1 s, 3 s, 7 s...)
    # or times out. Go's net package, like most servers, listens with somaxconn.
    request_queue_size = socket.SOMAXCONN
    ssl_context: ssl.SSLContext | None = None
    #: Seconds a client has to complete the TLS handshake before it is dropped.
    tls_handshake_timeout: float = 10.0

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        if self.ssl_context is not None:
            # The handshake happens lazily in the request thread, so a slow or
            # malicious client cannot block the accept loop.
            try:
                conn = self.ssl_context.wrap_socket(conn, server_side=True,
                                                    do_handshake_on_connect=False)
            except OSError:
                conn.close()  # socketserver skips the request but would leak the socket
                raise
        return conn, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            # Handshake explicitly, with a deadline, before any HTTP parsing: a
            # client that never completes it would otherwise hold its thread
            # forever, and a failure would surface as a traceback from deep in
            # the request handler. process_request_thread closes the socket.
            try:
                request.settimeout(self.tls_handshake_timeout)
                request.do_handshake()
                request.settimeout(None)
            except OSError as exc:  # ssl.SSLError, timeouts and resets included
                log.debug("tls handshake failed", extra={"fields": {
                    "client": client_address[0], "error": str(exc) or type(exc).__name__}})
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver's default prints a traceback to stderr for every client
        # that hangs up mid-request; keep those quiet and log anything else.
        exc = sys.exc_info()[1]
        if isinstance(exc, _CLIENT_ERRORS):
            log.debug("connection error", extra={"fields": {
                "client": client_address[0], "error": str(exc) or type(exc).__name__}})
            return
        log.error("error while serving a request", exc_info=sys.exc_info(),
                  extra={"fields": {"client": client_address[0]}})


class _ThreadingWSGIServerV6(ThreadingWSGIServer):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        # Accept IPv4 too on '::' (dual stack), as Go's ':port' does.
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def parse_listen_address(address: str) -> tuple[str, int]:
    """Split a Go-style listen address (``:10097``, ``127.0.0.1:0``, ``[::1]:9000``)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"must be host:port, e.g. :10097 or 127.0.0.1:10097, got {address!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def create_server(address: str, app: WSGIApplication,
                  ssl_context: ssl.SSLContext | None = None) -> ThreadingWSGIServer:
    """Bind (but do not start) a threading WSGI server for *app* on *address*."""
    host, port = parse_listen_address(address)
    server_class: type[ThreadingWSGIServer] = ThreadingWSGIServer
    if ":" in host:
        server_class = _ThreadingWSGIServerV6
    elif host == "":
        # ':port' means every interface, as in Go; prefer dual-stack when available.
        if socket.has_dualstack_ipv6():
            server_class, host = _ThreadingWSGIServerV6, "::"
        else:
            host = "0.0.0.0"
    server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    assert isinstance(server, ThreadingWSGIServer)
    server.ssl_context = ssl_context
    return server


def serve_in_thread(server: ThreadingWSGIServer) -> threading.Thread:
    """Run *server* in a background thread (tests, benchmarks); stop it with ``shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread
