"""The web config in force: reloaded when its files change, and the WSGI guard it sets.

The file and the certificate files it names are re-read when they change, at
most every ``reload_interval`` seconds (and at once by :meth:`WebSecurity.reload`,
on SIGHUP): new users, headers and rotated certificates apply without a restart.
A change that does not load (bad YAML, a half-written key) is logged once and
the last good configuration stays in force.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from exporter.web.auth import BasicAuth
from exporter.web.config import WebConfig, parse_web_config, read_web_config
from exporter.web.schema import WebConfigError
from exporter.web.tls import ReloadingSSLContext, build_ssl_context

if TYPE_CHECKING:  # wsgiref.types only exists at run time from Python 3.11
    from collections.abc import Callable
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from _typeshed import OptExcInfo

log = logging.getLogger("exporter.web")

#: The paths that ``--web.health-without-auth`` opens for kubelet probes.
HEALTH_PATHS: frozenset[str] = frozenset({"/-/healthy", "/-/ready"})

REALM = "scenario-exporter"
DEFAULT_RELOAD_INTERVAL = 2.0


@dataclass(frozen=True)
class _State:
    config: WebConfig
    ssl_context: ssl.SSLContext | None
    fingerprint: bytes


def _fingerprint(config_text: bytes, files: Iterable[Path]) -> bytes:
    """A digest of the config file and the certificate files, to notice any change.

    Contents rather than mtimes: Kubernetes swaps a symlink to rotate a secret,
    and a rewrite within the filesystem's timestamp granularity would go unseen.
    """
    digest = hashlib.sha256(config_text)
    for file in files:
        digest.update(b"\0" + os.fsencode(file) + b"\0")
        try:
            digest.update(file.read_bytes())
        except OSError as exc:
            digest.update(f"unreadable: {exc.errno}".encode())
    return digest.digest()


class WebSecurity:
    """What ``--web.config.file`` asks for: TLS, client certificates, basic auth, headers.

    Build it with :meth:`from_file`; pass :meth:`ssl_context` to
    ``create_server`` and the application through :meth:`wrap`.
    """

    def __init__(self, state: _State, open_paths: frozenset[str], reload_interval: float) -> None:
        self._state = state
        self._open_paths = open_paths
        self._reload_interval = reload_interval
        self._next_check = time.monotonic() + reload_interval
        self._reload_lock = threading.Lock()
        self._failed_fingerprint: bytes | None = None
        self.auth = BasicAuth()
        self.auth.decoy(state.config.max_bcrypt_cost)  # made now, not in the first request
        self._ssl_facade: ReloadingSSLContext | None = None
        if state.config.tls is not None:
            self._ssl_facade = ReloadingSSLContext.following(
                self._current_ssl_context, state.config.tls, state.config.path)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, open_paths: frozenset[str] = frozenset(),
                  reload_interval: float = DEFAULT_RELOAD_INTERVAL) -> WebSecurity:
        """Load and validate *path*; raises :class:`WebConfigError`.

        *open_paths* are answered without basic auth (``HEALTH_PATHS`` for
        ``--web.health-without-auth``); TLS still applies to them. Changes to
        the files are looked for at most every *reload_interval* seconds.
        """
        for open_path in open_paths:
            if not open_path.startswith("/"):
                raise ValueError(f"open path {open_path!r} must start with '/'")
        state = cls._load(Path(path).absolute())
        _log_notes(state.config)
        return cls(state, frozenset(open_paths), reload_interval)

    @staticmethod
    def _load(path: Path) -> _State:
        text = read_web_config(path)
        config = parse_web_config(path, text)
        # Fingerprint before building: if a file changes in between, the next
        # check sees a difference and loads again, so the state converges.
        fingerprint = _fingerprint(text, config.tls.files if config.tls else ())
        context = build_ssl_context(config.tls, path) if config.tls else None
        return _State(config=config, ssl_context=context, fingerprint=fingerprint)

    @property
    def config(self) -> WebConfig:
        """The configuration in force now."""
        self._refresh()
        return self._state.config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server context, or None without ``tls_server_config``.

        Each connection is wrapped with a context built from the current files.
        Turning TLS on or off needs a restart: the listener is plain or TLS.
        """
        return self._ssl_facade

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        """*app* behind basic auth (when users are configured), with the configured headers."""
        return _Guard(self, app)

    # -- reloading --

    def _current_ssl_context(self) -> ssl.SSLContext:
        self._refresh()
        context = self._state.ssl_context
        assert context is not None  # TLS cannot be switched off by a reload
        return context

    def _refresh(self) -> None:
        """Load the files again if they changed; at most every reload_interval seconds."""
        now = time.monotonic()
        if now < self._next_check or not self._reload_lock.acquire(blocking=False):
            return
        try:
            self._next_check = now + self._reload_interval
            self._reload_logged()
        finally:
            self._reload_lock.release()

    def reload(self) -> None:
        """Re-read the files now, whatever the reload interval (SIGHUP)."""
        with self._reload_lock:
            self._next_check = time.monotonic() + self._reload_interval
            self._reload_logged()

    def _reload_logged(self) -> None:
        try:
            self._reload()
        except Exception as exc:  # a surprise in reloading must not fail the request that ran it
            log.error("web config reload failed; the previous one stays in force",
                      extra={"fields": {"error": type(exc).__name__}})

    def _reload(self) -> None:
        state = self._state
        path = state.config.path
        try:
            text = path.read_bytes()
        except OSError as exc:
            self._reload_failed(f"unreadable: {exc.errno}".encode(), WebConfigError(
                path, "", f"cannot be read: {exc.strerror}"))
            return
        if _fingerprint(text, state.config.tls.files if state.config.tls else ()) \
                == state.fingerprint:
            return
        try:
            config = parse_web_config(path, text)
        except WebConfigError as exc:
            self._reload_failed(hashlib.sha256(text).digest(), exc)
            return
        # The new config may name other files: fingerprint those.
        fingerprint = _fingerprint(text, config.tls.files if config.tls else ())
        if fingerprint in (state.fingerprint, self._failed_fingerprint):
            return
        if (config.tls is None) != (state.config.tls is None):
            self._reload_failed(fingerprint, WebConfigError(
                path, "tls_server_config", "TLS cannot be switched on or off without a restart"))
            return
        try:
            context = build_ssl_context(config.tls, path) if config.tls else None
        except WebConfigError as exc:  # e.g. a key written before its certificate
            self._reload_failed(fingerprint, exc)
            return
        self.auth.decoy(config.max_bcrypt_cost)
        self.auth.forget()
        self._state = _State(config=config, ssl_context=context, fingerprint=fingerprint)
        self._failed_fingerprint = None
        log.info("web config reloaded", extra={"fields": {
            "file": str(path), "tls": config.tls is not None, "users": len(config.users)}})
        _log_notes(config)

    def _reload_failed(self, fingerprint: bytes, error: WebConfigError) -> None:
        # Logged once per broken version of the files, not at every check.
        if fingerprint != self._failed_fingerprint:
            self._failed_fingerprint = fingerprint
            log.error("web config change not applied; the previous one stays in force",
                      extra={"fields": {"error": str(error)}})


def _log_notes(config: WebConfig) -> None:
    for note in config.notes:
        log.warning(note, extra={"fields": {"file": str(config.path)}})


class _Guard:
    """The WSGI middleware returned by :meth:`WebSecurity.wrap`."""

    def __init__(self, security: WebSecurity, app: WSGIApplication) -> None:
        self._security = security
        self._app = app

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        security = self._security
        config = security.config
        extra = config.headers

        def start_with_headers(status: str, headers: list[tuple[str, str]],
                               exc_info: OptExcInfo | None = None) -> Callable[[bytes], object]:
            # The operator's headers win over the application's of the same name.
            names = {name.lower() for name, _ in extra}
            merged = [(n, v) for n, v in headers if n.lower() not in names] + list(extra)
            return start_response(status, merged, exc_info)

        path = environ.get("PATH_INFO", "")
        if not config.users or path in security._open_paths:
            return self._app(environ, start_with_headers)
        client = environ.get("REMOTE_ADDR", "")
        verdict = security.auth.check(config.users, config.max_bcrypt_cost,
                                      environ.get("HTTP_AUTHORIZATION"), client)
        if verdict:
            return self._app(environ, start_with_headers)
        log.debug("basic auth failed", extra={"fields": {
            "client": client, "path": path, "busy": verdict is None}})
        if verdict is None:
            return _too_many(start_with_headers)
        return _unauthorized(start_with_headers)


def _too_many(start_response: StartResponse) -> Iterator[bytes]:
    body = b"429 Too Many Requests: a password check from this address is still running\n"
    start_response("429 Too Many Requests", [
        ("Retry-After", "1"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    yield body


def _unauthorized(start_response: StartResponse) -> Iterator[bytes]:
    body = b"401 Unauthorized\n"
    start_response("401 Unauthorized", [
        ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    yield body
