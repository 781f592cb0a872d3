"""``--web.config.file`` for the tests of ``exporter/web``: the files written as a mounted
secret is, cheap bcrypt hashes, how a refused file must read, and an application
served behind the guard. Free of pytest."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import bcrypt

from exporter.web.schema import WebConfigError
from exporter.web.security import WebSecurity
from exporter.web.server import HTTPServer, ServerLimits
from testkit.pki import replace_file
from testkit.web import Reply, basic_authorization, http_get, serving

DEADLINE = 10.0  # for an answer, or for a rewritten file to apply
FAST = 0.05  # reload interval for the tests that rewrite files

# tls_server_config naming the files of :meth:`testkit.pki.PKI.write_secret`.
TLS = "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
MTLS = TLS + "  client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n"

# A basic_auth_users value that is no bcrypt hash (a password pasted by mistake, say):
# no error and no log line may show it.
NOT_A_HASH = "not-a-hash-and-secret"


def bcrypt_hash(password: str, cost: int = 4) -> str:
    """*password* hashed as htpasswd does, at the cheapest cost unless told."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


def users(**hashes: str) -> str:
    """``basic_auth_users`` with these users and hashes."""
    return "basic_auth_users:\n" + "".join(f"  {u}: '{h}'\n" for u, h in hashes.items())


def write_config(directory: Path, text: str, name: str = "web.yml") -> Path:
    """*text* as the web config file *name* in *directory*, replaced in one step."""
    path = directory / name
    replace_file(path, text.encode())
    return path


def assert_refused(path: Path, field: str, problem: str) -> None:
    """Loading *path* fails with one line that names the file and *field* (none: the
    file as a whole), says *problem*, and never shows NOT_A_HASH."""
    try:
        WebSecurity.from_file(str(path))
    except WebConfigError as error:
        message = str(error)
        prefix = f"web config {path}: " + (f"{field}: " if field else "")
        assert message.startswith(prefix), message
        assert problem in message, message
        assert "\n" not in message, message
        assert NOT_A_HASH not in message, message
        assert error.field == field, error.field
        return
    raise AssertionError(f"{path} was loaded, not refused with {problem!r}")


def refusal_ids(table: Sequence[tuple[str, str, str]]) -> list[str]:
    """Test ids of a table of refused files, ``(text, field, problem)`` rows: the row's
    index and the field (the problem where the file as a whole is refused)."""
    return [f"{i:02d}-{f or p}" for i, (_, f, p) in enumerate(table)]


def ok_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``ok`` and the path, with the application's own X-Frame-Options."""
    body = f"ok {environ['PATH_INFO']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Frame-Options", "sameorigin"),
                              ("Content-Length", str(len(body)))])
    return [body]


def serving_guarded(security: WebSecurity,
                    limits: ServerLimits | None = None) -> AbstractContextManager[HTTPServer]:
    """:func:`ok_app` behind *security*'s guard and SSL context, served on loopback."""
    return serving(security.wrap(ok_app), security.ssl_context(), limits)


def fetch(server: HTTPServer, path: str = "/metrics", *, tls: ssl.SSLContext | None = None,
          auth: tuple[str, str] | None = None, authorization: str | None = None) -> Reply:
    """One GET of *path* from *server*, with basic credentials *auth* or the raw
    *authorization* header."""
    if auth is not None:
        authorization = basic_authorization(*auth)
    headers = {} if authorization is None else {"Authorization": authorization}
    return http_get(server.server_port, path, headers, tls=tls, timeout=DEADLINE)
