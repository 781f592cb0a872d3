"""The backfill's samples pushed with the Prometheus remote-write 1.0 protocol.

Each request is an HTTP POST of a ``prometheus.WriteRequest`` (protobuf),
compressed as one snappy block, to Prometheus (``--web.enable-remote-write-receiver``),
Mimir, Thanos Receive, VictoriaMetrics or Grafana Cloud.

Why ``protobuf`` and ``cramjam``: PyPI's ``prometheus-remote-writer`` pulls in
grpcio-tools, requests and a pinned python-snappy, never splits a long series,
guesses whether timestamps are seconds and puts the server's whole answer in its
errors. The four small prompb messages are built here at run time from a
descriptor (no generated code) and encoded by Google's ``protobuf``; ``cramjam``
(python-snappy's own engine) makes the snappy block. Both are maintained.

A request holds at most ``max_samples_per_request`` samples; 2000 is
Prometheus' own ``max_samples_per_send``, which every receiver accepts. 5xx,
429, timeouts and connection errors are retried after 1 s, 2 s, 4 s ... capped
at 60 s, each times a random factor in [0.5, 1], or after a 429's or 503's
``Retry-After`` when longer (at most 10 min); other answers are final.
"""

from __future__ import annotations

import argparse
import base64
import logging
import random
import re
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cramjam
import httpx

from exporter.backfill.prompb import WriteRequest
from exporter.core.errors import ConfigError
from exporter.core.period import wall_clock
from exporter.upstream.client import USER_AGENT, parse_retry_after

log = logging.getLogger("exporter.backfill")

MAX_ATTEMPTS = 8  # per request, for failures that may pass (5xx, 429, timeouts)
RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 60.0
RETRY_AFTER_CAP_SECONDS = 600.0
MESSAGE_CHARACTERS = 300  # of the server's answer in an error
PROTOCOL_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
# Set by the exporter or by HTTP itself: --remote-write.header may not replace them.
_RESERVED_HEADERS = frozenset(name.lower() for name in (
    *PROTOCOL_HEADERS, "User-Agent", "Content-Length", "Host", "Connection",
    "Transfer-Encoding"))
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def display_url(url: str) -> str:
    """*url* as errors and logs show it: no user:password@, query or fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def read_secret(flag: str, path: str, *, strip_all: bool) -> str:
    """A token (stripped) or password (less its trailing newline) from its file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{flag}: {path} is not UTF-8 text") from None
    secret = text.strip() if strip_all else text.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise ConfigError(f"{flag}: {path} is empty")
    return secret


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """The --remote-write.* flags (see :meth:`RemoteWriteOptions.from_arguments`)."""
    group.add_argument("--remote-write.url", dest="remote_write.url", metavar="URL",
                       help="push the samples to this remote-write endpoint "
                            "(e.g. http://prometheus:9090/api/v1/write)")
    group.add_argument("--remote-write.bearer-token-file", dest="remote_write.bearer_token_file",
                       metavar="FILE", help="file holding a bearer token sent with each push")
    group.add_argument("--remote-write.basic-auth.username",
                       dest="remote_write.basic_auth.username", metavar="NAME",
                       help="HTTP basic auth user name for the pushes")
    group.add_argument("--remote-write.basic-auth.password-file",
                       dest="remote_write.basic_auth.password_file", metavar="FILE",
                       help="file holding the HTTP basic auth password")
    group.add_argument("--remote-write.ca-file", dest="remote_write.ca_file", metavar="FILE",
                       help="PEM CA certificates trusted for the endpoint, besides the "
                            "system's")
    group.add_argument("--remote-write.header", dest="remote_write.header", action="append",
                       metavar="'NAME: VALUE'",
                       help="extra HTTP header of each push (repeat: "
                            "--remote-write.header='X-Scope-OrgID: tenant-1')")


@dataclass(frozen=True)
class RemoteWriteOptions:
    """Where and how to push, validated."""

    url: str
    bearer_token_file: str | None = None
    basic_auth_username: str | None = None
    basic_auth_password_file: str | None = None
    ca_file: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    timeout_seconds: float = 30.0
    max_samples_per_request: int = 2000  # Prometheus' own max_samples_per_send

    @classmethod
    def from_arguments(cls, values: dict[str, Any]) -> RemoteWriteOptions | None:
        """From the parsed flags (by ``dest``), None without a URL; a bad one raises
        :class:`ConfigError` naming its flag."""
        url = values.get("remote_write.url")
        if not url:
            return None
        _check_url(url)
        token_file = values.get("remote_write.bearer_token_file")
        username = values.get("remote_write.basic_auth.username")
        password_file = values.get("remote_write.basic_auth.password_file")
        if token_file and (username or password_file):
            raise ConfigError("--remote-write.bearer-token-file: cannot be used with "
                              "--remote-write.basic-auth.*; choose one")
        if password_file and not username:
            raise ConfigError("--remote-write.basic-auth.password-file: needs "
                              "--remote-write.basic-auth.username")
        if username and not password_file:
            raise ConfigError("--remote-write.basic-auth.username: needs "
                              "--remote-write.basic-auth.password-file")
        if token_file:
            read_secret("--remote-write.bearer-token-file", token_file, strip_all=True)
        if password_file:
            read_secret("--remote-write.basic-auth.password-file", password_file,
                        strip_all=False)
        ca_file = values.get("remote_write.ca_file")
        if ca_file:
            _check_ca_file(ca_file)
        return cls(url, token_file or None, username or None, password_file or None,
                   ca_file or None, _parse_headers(values.get("remote_write.header") or ()))

    def secrets(self) -> set[str]:
        """The token and password as they could appear in text, for the log redactor."""
        return {secret for secret in _credentials(self)[2] if len(secret) >= 4}


def _credentials(options: RemoteWriteOptions,
                 ) -> tuple[str | None, httpx.BasicAuth | None, list[str]]:
    """The bearer token, the basic auth, and their secrets as text may show them."""
    token = auth = None
    secrets: list[str] = []
    if options.bearer_token_file:
        token = read_secret("--remote-write.bearer-token-file", options.bearer_token_file,
                            strip_all=True)
        secrets.append(token)
    if options.basic_auth_username is not None and options.basic_auth_password_file:
        password = read_secret("--remote-write.basic-auth.password-file",
                               options.basic_auth_password_file, strip_all=False)
        auth = httpx.BasicAuth(options.basic_auth_username, password)
        pair = f"{options.basic_auth_username}:{password}".encode()
        secrets += [password, base64.b64encode(pair).decode()]
    return token, auth, secrets


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    try:
        port_ok = parts.port != 0
    except ValueError:  # not a number, or out of range
        port_ok = False
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or not port_ok:
        raise ConfigError(f"--remote-write.url: {display_url(url)} is not an http(s) URL")
    if "@" in parts.netloc:
        raise ConfigError("--remote-write.url: must not hold credentials (user:password@); "
                          "use --remote-write.basic-auth.* or --remote-write.bearer-token-file")


def _check_ca_file(path: str) -> None:
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except ssl.SSLError:  # an OSError too: first
        raise ConfigError(f"--remote-write.ca-file: {path} holds no PEM CA certificate") from None
    except OSError as exc:
        raise ConfigError(f"--remote-write.ca-file: cannot read {path}: "
                          f"{exc.strerror or exc}") from None


def _parse_headers(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """'Name: value' or 'Name=value' items; errors never show a value (it may be a key)."""
    headers: dict[str, tuple[str, str]] = {}
    for number, item in enumerate(items, 1):
        cut = min((i for i in (item.find(":"), item.find("=")) if i >= 0), default=-1)
        name, value = item[:cut].strip(), item[cut + 1:].strip()
        if cut < 0 or not _HEADER_NAME.match(name) or not value or not value.isprintable():
            raise ConfigError(f"--remote-write.header: item {number} is not 'Name: value' "
                              "(e.g. 'X-Scope-OrgID: tenant-1')")
        if name.lower() == "authorization":
            raise ConfigError("--remote-write.header: Authorization is refused; use "
                              "--remote-write.bearer-token-file or --remote-write.basic-auth.*")
        if name.lower() in _RESERVED_HEADERS:
            raise ConfigError(f"--remote-write.header: {name} is set by the exporter")
        if name.lower() in headers:
            raise ConfigError(f"--remote-write.header: {name} is given twice")
        headers[name.lower()] = (name, value)
    return tuple(headers.values())


class RemoteWriteError(Exception):
    """A push that failed for good: one line with the status and the server's message."""


@dataclass
class PushStats:
    """What was accepted: requests, series, samples and compressed bytes; and retries."""

    requests: int = 0
    series: int = 0
    samples: int = 0
    bytes: int = 0
    retries: int = 0
    seconds: float = 0.0  # spent encoding and sending, waits for retries included


@dataclass
class _Chunk:
    """Consecutive samples of one series, all in one request."""

    labels: list[tuple[str, str]]
    samples: list[tuple[int, float]] = field(default_factory=list)
    first: bool = True  # the series' first chunk (counted in PushStats.series)


class RemoteWriter:
    """Pushes series to one remote-write endpoint, in requests of bounded size."""

    def __init__(self, options: RemoteWriteOptions, *,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        if options.max_samples_per_request < 1:
            raise ValueError("max_samples_per_request must be at least 1")
        self.stats = PushStats()
        self._options = options
        self._url = display_url(options.url)
        self._sleep = sleep
        self._rng = rng or random.Random()
        headers = {"User-Agent": USER_AGENT, **PROTOCOL_HEADERS, **dict(options.headers)}
        token, auth, self._secrets = _credentials(options)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        # *ca_file* adds to the CAs httpx trusts by default, as for upstream.
        verify = httpx.create_ssl_context()
        if options.ca_file:
            verify.load_verify_locations(cafile=options.ca_file)
        self._http = httpx.Client(timeout=options.timeout_seconds, transport=transport,
                                  follow_redirects=False, verify=verify, headers=headers,
                                  auth=auth)

    def close(self) -> None:
        self._http.close()

    def push(self, series: Iterable[tuple[Mapping[str, str], Sequence[tuple[float, float]]]],
             ) -> None:
        """Send each series (its labels, ``__name__`` included, and its samples as
        (unix seconds, value) in time order) in requests of at most
        ``max_samples_per_request`` samples, in the given order: a long series goes
        on in the next request. Raises :class:`RemoteWriteError`."""
        started = time.monotonic()
        try:
            self._push(series)
        finally:
            self.stats.seconds += time.monotonic() - started

    def _push(self, series: Iterable[tuple[Mapping[str, str], Sequence[tuple[float, float]]]],
              ) -> None:
        for batch in _batches(series, self._options.max_samples_per_request):
            request = WriteRequest()
            for chunk in batch:
                item = request.timeseries.add()
                for name, text in chunk.labels:
                    item.labels.add(name=name, value=text)
                for milliseconds, number in chunk.samples:
                    item.samples.add(value=number, timestamp=milliseconds)
            body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
            self._send(body)
            self.stats.requests += 1
            self.stats.series += sum(chunk.first for chunk in batch)
            self.stats.samples += sum(len(chunk.samples) for chunk in batch)
            self.stats.bytes += len(body)

    def _send(self, body: bytes) -> None:
        """One request, retried while its failure may pass."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            retry_after: float | None = None
            status: int | None = None
            try:
                response = self._http.post(self._options.url, content=body)
            except httpx.TimeoutException:
                problem = f"no answer within {self._options.timeout_seconds:g}s"
            except httpx.RequestError as exc:  # connection refused, reset, TLS ...
                problem = self._scrub(f"request failed: {type(exc).__name__}: {exc}")
            else:
                if response.is_success:
                    return
                status = response.status_code
                problem = f"HTTP {status}" + self._server_message(response)
                if status != 429 and status < 500:
                    raise RemoteWriteError(f"remote write to {self._url} refused: {problem}")
                if status in (429, 503):
                    retry_after = parse_retry_after(response.headers.get("Retry-After"),
                                                    wall_clock())
            if attempt == MAX_ATTEMPTS:
                raise RemoteWriteError(f"remote write to {self._url} failed after "
                                       f"{MAX_ATTEMPTS} attempts: {problem}")
            delay = retry_delay(attempt, self._rng, retry_after)
            log.warning("remote write failed, retrying", extra={"fields": {
                "url": self._url, "status": status, "error": problem, "attempt": attempt,
                "retry_in_seconds": round(delay, 1)}})
            self.stats.retries += 1
            self._sleep(delay)

    def _server_message(self, response: httpx.Response) -> str:
        """': ' and the answer's text on one line, cut short, secrets removed."""
        text = self._scrub(" ".join(response.text.split()))
        if len(text) > MESSAGE_CHARACTERS:
            text = text[:MESSAGE_CHARACTERS] + "…"
        return f": {text}" if text else ""

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text


def retry_delay(failures: int, rng: random.Random, retry_after: float | None = None) -> float:
    """Seconds to wait after the *failures*-th failure in a row of one request."""
    delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2.0 ** (failures - 1))
    delay *= rng.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP_SECONDS))
    return delay


def _batches(series: Iterable[tuple[Mapping[str, str], Sequence[tuple[float, float]]]],
             limit: int) -> Iterator[list[_Chunk]]:
    """The series cut into requests of at most *limit* samples, order kept."""
    batch: list[_Chunk] = []
    room = limit
    for labels, samples in series:
        if "__name__" not in labels:
            raise ValueError(f"a series without __name__: {sorted(labels)}")
        chunk = _Chunk(sorted(labels.items()))
        last: int | None = None
        for seconds, value in samples:
            milliseconds = round(seconds * 1000)
            if last is not None and milliseconds < last:
                raise ValueError(f"samples out of time order in a {labels['__name__']} series")
            last = milliseconds
            if room == 0:
                if chunk.samples:
                    batch.append(chunk)
                    chunk = _Chunk(chunk.labels, first=False)
                yield batch
                batch, room = [], limit
            chunk.samples.append((milliseconds, float(value)))
            room -= 1
        if chunk.samples:
            batch.append(chunk)
    if batch:
        yield batch
