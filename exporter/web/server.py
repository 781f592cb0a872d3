"""The HTTP transport: Hypercorn serving the WSGI application on the listen address.

Hypercorn reads and parses requests on one asyncio event loop and only hands a
complete request to a bounded pool of worker threads, so a connection that
sends half a header (or nothing) costs a socket, never a thread, and is closed
when the header timeout passes. docs/security.md compares it with cheroot,
waitress and uvicorn and lists every limit.

TLS and authentication are layered on by :mod:`exporter.web.security`; this module
only takes the SSLContext it is given (whose ``wrap_bio`` may pick the current
certificate for each connection).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import socket
import ssl
import sys
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hypercorn.asyncio import serve
from hypercorn.config import Config, Sockets

from exporter.config.settings import parse_listen_address

if TYPE_CHECKING:  # wsgiref.types exists at run time from Python 3.11 only
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("exporter.http")

#: Listen backlog: a burst of connections (several Prometheus replicas, a load
#: balancer's probes) must not overflow it; Go's net package uses somaxconn too.
BACKLOG = socket.SOMAXCONN
#: asyncio sets TCP_NODELAY on every accepted TCP socket: small responses are
#: not held back by Nagle's algorithm.
TCP_NODELAY = True


@dataclass(frozen=True)
class ServerLimits:
    """The bounds the server holds every client to (``--web.*`` flags, docs/security.md)."""

    #: A connection that has not sent a whole request header within this many
    #: seconds (after connecting, or after its previous response) is closed.
    #: This is also the keep-alive idle timeout.
    header_timeout: float = 10.0
    #: Worker threads running the application; more requests wait in a queue.
    max_threads: int = 8
    #: On SIGTERM, how long requests in flight may take to finish.
    shutdown_grace: float = 10.0
    #: Seconds a client has to complete the TLS handshake.
    tls_handshake_timeout: float = 10.0
    #: Bytes of request line and headers; a larger header is answered 431/400.
    max_header_bytes: int = 16 * 1024
    #: Bytes of request body; the exporter only serves GET, so this is small.
    max_body_bytes: int = 64 * 1024
    #: Seconds one read of a started request (its body) may wait for data.
    read_timeout: int = 30


# An absolute-form request target (RFC 9112 3.2.2), which proxies send.
_ABSOLUTE_FORM = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*(?P<path>/[^?#]*)?")


# h11 parses any HTTP/x.y request line; only these versions are spoken.
_PROTOCOLS = frozenset({"HTTP/1.0", "HTTP/1.1", "HTTP/2"})


def _guard(app: WSGIApplication) -> WSGIApplication:
    """*app*, with absolute-form targets routed and any surprise a one-line 500.

    Whatever escapes the application is logged once with an error id (which
    the client also gets) and never reaches the client as a traceback.
    """

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("SERVER_PROTOCOL") not in _PROTOCOLS:
            body = b"505 HTTP Version Not Supported\n"
            start_response("505 HTTP Version Not Supported", [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body)))])
            return [body]
        match = _ABSOLUTE_FORM.match(environ.get("PATH_INFO", ""))
        if match:
            environ["PATH_INFO"] = match.group("path") or "/"
        try:
            return list(app(environ, start_response))
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            log.error("unexpected error while serving a request", extra={"fields": {
                "error_id": error_id, "error": type(exc).__name__,
                "client": environ.get("REMOTE_ADDR", ""), "path": environ.get("PATH_INFO", "")}})
            body = f"500 Internal Server Error (error id {error_id})\n".encode()
            start_response("500 Internal Server Error", [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body)))], sys.exc_info())
            return [body]

    return guarded


class _ExporterConfig(Config):
    """Hypercorn's settings, with the socket and SSLContext made by this module."""

    def __init__(self, sockets: list[socket.socket], ssl_context: ssl.SSLContext | None,
                 limits: ServerLimits) -> None:
        super().__init__()
        self._sockets = sockets
        self._ssl_context = ssl_context
        self.keep_alive_timeout = limits.header_timeout
        self.ssl_handshake_timeout = limits.tls_handshake_timeout
        self.graceful_timeout = limits.shutdown_grace
        self.h11_max_incomplete_size = limits.max_header_bytes
        self.wsgi_max_body_size = limits.max_body_bytes
        self.read_timeout = limits.read_timeout
        self.backlog = BACKLOG
        self.include_server_header = False  # no name or version for a scanner to match
        # HTTP/2 (cleartext, for clients that ask): few streams per connection,
        # so one connection cannot queue more than a few requests at once.
        self.h2_max_concurrent_streams = 10
        self.accesslog = None
        # Hypercorn's own info lines repeat ours ("Running on ..."); its warnings
        # and errors still go through the exporter's log format.
        self.errorlog = logging.getLogger("exporter.http.server")
        self.errorlog.setLevel(logging.WARNING)

    @property
    def ssl_enabled(self) -> bool:
        return self._ssl_context is not None

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl_context

    def create_sockets(self) -> Sockets:
        if self._ssl_context is not None:
            return Sockets(self._sockets, [], [])
        return Sockets([], self._sockets, [])


# Exceptions that only mean a client went away or spoke something else than
# TLS: one debug line, not asyncio's default multi-line report.
_CLIENT_ERRORS = (ssl.SSLError, ConnectionError, TimeoutError, OSError)


_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    fields = {"error": str(exc) or type(exc).__name__ if exc else context.get("message", "")}
    if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
        # Out of file descriptors or memory: asyncio pauses accepting for a second.
        log.warning("cannot accept connections: out of a system resource",
                    extra={"fields": fields})
    elif isinstance(exc, _CLIENT_ERRORS):
        log.debug("connection error", extra={"fields": fields})
    else:
        log.error("event loop error", extra={"fields": {
            **fields, "type": type(exc).__name__ if exc else ""}})


def _bind(address: str) -> socket.socket:
    host, port = parse_listen_address(address)
    if host == "":
        # ':port' means every interface, as in Go; dual-stack where available.
        host = "::" if socket.has_dualstack_ipv6() else "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(BACKLOG)  # connections made before serving starts wait in the backlog
    except OSError:
        sock.close()
        raise
    return sock


class HTTPServer:
    """The exporter's listener: bound at construction, served by :meth:`serve_forever`."""

    def __init__(self, address: str, app: WSGIApplication,
                 ssl_context: ssl.SSLContext | None = None,
                 limits: ServerLimits | None = None) -> None:
        self.limits = limits or ServerLimits()
        self.socket = _bind(address)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self.ssl_context = ssl_context
        self._app = _guard(app)
        self._config = _ExporterConfig([self.socket], ssl_context, self.limits)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._finished = threading.Event()

    @property
    def server_port(self) -> int:
        """The bound port (useful with port 0)."""
        return self.server_address[1]

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown`; requests in flight get ``shutdown_grace`` to end."""
        loop = asyncio.new_event_loop()
        executor = ThreadPoolExecutor(max_workers=self.limits.max_threads,
                                      thread_name_prefix="http-worker")
        loop.set_default_executor(executor)
        loop.set_exception_handler(_loop_exception)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            loop.close()
            self._finished.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._started.set()
        await serve(self._app, self._config,
                    shutdown_trigger=self._stop.wait, mode="wsgi")

    def shutdown(self) -> None:
        """Stop accepting, let requests in flight finish (bounded), and return."""
        self._started.wait(timeout=5)
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop closed in between
                return
            self._finished.wait(timeout=self.limits.shutdown_grace + 5)

    def server_close(self) -> None:
        """Close the listening socket (serving closes it too)."""
        self.socket.close()


def create_server(address: str, app: WSGIApplication,
                  ssl_context: ssl.SSLContext | None = None,
                  limits: ServerLimits | None = None) -> HTTPServer:
    """Bind (but do not start) the server for *app* on *address*."""
    return HTTPServer(address, app, ssl_context, limits)


def serve_in_thread(server: HTTPServer) -> threading.Thread:
    """Run *server* in a background thread (tests, benchmarks); stop it with ``shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread
