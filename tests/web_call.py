"""Calling a WSGI application in-process, as a server would, and reading its reply."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from io import BytesIO
from typing import Any


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
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        environ["HTTP_AUTHORIZATION"] = f"Basic {token}"
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        captured["status"], captured["headers"] = status, dict(response_headers)
        return lambda data: None

    body = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], body
