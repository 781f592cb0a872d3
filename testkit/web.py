"""Calling the web layer from tests and the benchmark: a WSGI application in-process,
as a server would, an application served on loopback, or one plain GET. Free of pytest."""

from __future__ import annotations

import base64
import http.client
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from exporter.web.server import HTTPServer, ServerLimits, create_server, serve_in_thread

# How long a served application may take to stop.
STOP_TIMEOUT = 10.0


def call(app: Callable[..., Any], path: str, method: str = "GET",
         headers: Mapping[str, str] | None = None,
         auth: tuple[str, str] | None = None) -> tuple[str, dict[str, str], bytes]:
    """``(status line, headers, body)`` of *method* *path* (with its query string).

    *auth* is sent as HTTP basic credentials; the client address is 192.0.2.1.
    """
    path, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "wsgi.input": BytesIO(), "SERVER_NAME": "test", "SERVER_PORT": "80",
        "wsgi.url_scheme": "http", "REMOTE_ADDR": "192.0.2.1"}
    for key, value in (headers or {}).items():
        environ["HTTP_" + key.upper().replace("-", "_")] = value
    if auth is not None:
        environ["HTTP_AUTHORIZATION"] = basic_authorization(*auth)
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        captured["status"], captured["headers"] = status, dict(response_headers)
        return lambda data: None

    body = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], body


def basic_authorization(user: str, password: str | None = None) -> str:
    """The ``Authorization`` header value of HTTP basic credentials.

    Without *password*, the credentials are *user* alone, with no colon: a header
    that no server can split into a user and a password.
    """
    credentials = user if password is None else f"{user}:{password}"
    return "Basic " + base64.b64encode(credentials.encode()).decode()


@dataclass(frozen=True)
class Reply:
    """One HTTP response: header names in lower case; the server's certificate over TLS."""

    status: int
    headers: dict[str, str]
    body: bytes
    peer_cert: bytes | None = None


def http_get(port: int, path: str, headers: Mapping[str, str] | None = None, *,
             tls: ssl.SSLContext | None = None, timeout: float = 30.0) -> Reply:
    """One GET of *path* on a fresh connection to 127.0.0.1:*port*, closed after it."""
    conn: http.client.HTTPConnection
    if tls is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=timeout)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.connect()
        peer = None
        if isinstance(conn.sock, ssl.SSLSocket):
            peer = conn.sock.getpeercert(binary_form=True)
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read(), peer)
    finally:
        conn.close()


@contextmanager
def serving(app: Callable[..., Iterable[bytes]], ssl_context: ssl.SSLContext | None = None,
            limits: ServerLimits | None = None) -> Iterator[HTTPServer]:
    """*app* served on an ephemeral loopback port for the length of the block."""
    server = create_server("127.0.0.1:0", app, ssl_context, limits)
    thread = serve_in_thread(server)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_TIMEOUT)
