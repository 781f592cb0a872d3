"""The upstream client: one ``GET /v1/usages`` for one window, parsed and summed.

It asks only for the sections that are exported and drops zero points (which
keeps responses far below the API gateway's 6 MB limit). A response too large
all the same is raised as :class:`ResponseTooLarge`: cutting the period into
pieces, and remembering how, is :mod:`exporter.upstream.pieces`'s concern.

Failures are raised as :class:`UpstreamError`, which carries the ``reason``
label of the failure counter and, for 429, the server's ``Retry-After``.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
from collections.abc import Callable
from datetime import timezone
from pathlib import Path
from typing import TypeVar

import httpx
from pydantic import ValidationError

from exporter import __version__
from exporter.core.account import AccountConfig
from exporter.core.errors import FailureReason, InvalidResponse, ResponseTooLarge, UpstreamError
from exporter.core.period import (
    PeriodWindow,
    describe_window,
    isoformat_utc,
    monotonic_clock,
    wall_clock,
)
from exporter.core.values import FetchResult, UsageSnapshot
from exporter.upstream.schema import UsageResponse
from exporter.upstream.summing import summarize

log = logging.getLogger("exporter.upstream")

# The sections exported, in the order of the SDK's `type` enum (comma-joined, as it sends them).
SECTIONS = "usages,consumption,model-usages,asset-usages,nsfw-usages,quality-gate-usages"
USER_AGENT = f"scenario-exporter/{__version__}"
T = TypeVar("T")
_TOO_LARGE_WORDS = ("payload", "body size", "response size", "too large", "too big")


RequestRecorder = Callable[[str, str, float, "int | None"], None]
RequestPermit = Callable[[], bool]


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


class UsageClient:
    """Reads usage of an account over a window from Scenario's API.

    *api_url* is the default base URL; an account's own ``api_url`` wins.
    """

    def __init__(self, api_url: str, timeout: float, *,
                 transport: httpx.BaseTransport | None = None,
                 record: RequestRecorder | None = None,
                 monotonic: Callable[[], float] = monotonic_clock,
                 wall: Callable[[], float] = wall_clock,
                 ca_file: Path | None = None) -> None:
        # *ca_file* adds to the CAs httpx trusts by default (SSL_CERT_FILE would replace them).
        verify = httpx.create_ssl_context()
        if ca_file is not None:
            verify.load_verify_locations(cafile=ca_file)
        self._api_url = api_url.rstrip("/")
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False,
                                  verify=verify,
                                  headers={"User-Agent": USER_AGENT,
                                           "Accept": "application/json"})
        self._record = record or (lambda account, code, seconds, size: None)
        self._monotonic = monotonic
        self._wall = wall

    def close(self) -> None:
        self._http.close()

    def fetch_window(self, account: AccountConfig, window: PeriodWindow,
                     permit: RequestPermit | None = None) -> FetchResult:
        """Sum *window* for *account* with one call (see :meth:`fetch_response`)."""
        def read(body: bytes) -> UsageSnapshot:
            parsed = UsageResponse.model_validate_json(body)
            return summarize(parsed, window)  # the parsed response is freed on return

        snapshot, size = self._call(account, "/usages", self._params(account, window), permit,
                                    read, window)
        return FetchResult(snapshot, 1, size)

    def fetch_response(self, account: AccountConfig, window: PeriodWindow,
                       permit: RequestPermit | None = None) -> tuple[UsageResponse, int]:
        """One ``GET /usages`` for *window*: the parsed response and the body's size.

        *permit* is asked first (the hourly cap); a refusal raises reason
        ``request_cap``. Every failure is an :class:`UpstreamError`; a response
        too large for the gateway is a :class:`ResponseTooLarge`.
        """
        return self._call(account, "/usages", self._params(account, window), permit,
                          UsageResponse.model_validate_json, window)

    def get_json(self, account: AccountConfig, path: str, params: dict[str, str],
                 read: Callable[[bytes], T], permit: RequestPermit | None = None) -> T:
        """One ``GET`` of another endpoint (*path* under the API URL), its 200 body
        turned into a value by *read*; failures as for usages, with the status kept
        on the :class:`UpstreamError` (403: the key lacks the scope; 404: no such team).
        """
        return self._call(account, path, params, permit, read, None)[0]

    def _params(self, account: AccountConfig, window: PeriodWindow) -> dict[str, str]:
        params = {
            "type": SECTIONS,
            "dropZeroPoints": "true",
            "startDate": isoformat_utc(window.start),
            "endDate": isoformat_utc(window.end),
        }
        if account.project_ids:
            params["projectIds"] = ",".join(account.project_ids)
        if account.team_id:
            params["teamId"] = account.team_id
        if account.user_ids:
            params["userIds"] = ",".join(account.user_ids)
        return params

    def _call(self, account: AccountConfig, path: str, params: dict[str, str],
              permit: RequestPermit | None, read: Callable[[bytes], T],
              window: PeriodWindow | None) -> tuple[T, int]:
        """One call: the cap, HTTP, status mapping, and *read* of a 200 body.

        *window* is the usages' window: then a response too large for the gateway
        is a :class:`ResponseTooLarge` and its size is the last response's size.
        """
        if permit is not None and not permit():
            raise UpstreamError(FailureReason.REQUEST_CAP, "the hourly cap of upstream requests "
                                               "(--upstream.max-requests-per-hour) is reached")
        try:
            credentials = f"{account.key()}:{account.secret()}"
        except ValueError as exc:  # a key or secret file gone or emptied since start-up
            raise UpstreamError(FailureReason.AUTH, f"cannot read the credentials: {exc}") from None
        token = base64.b64encode(credentials.encode()).decode()
        url = (account.api_url or self._api_url) + path
        started = self._monotonic()
        try:
            response = self._http.get(url, params=params,
                                      headers={"Authorization": f"Basic {token}"})
        except httpx.TimeoutException:
            self._record(account.name, "timeout", self._monotonic() - started, None)
            raise UpstreamError(FailureReason.TIMEOUT, "upstream did not answer in time "
                                           "(--upstream.timeout)") from None
        except httpx.HTTPError as exc:
            self._record(account.name, "connection_error", self._monotonic() - started, None)
            raise UpstreamError(FailureReason.CONNECTION_ERROR,
                                f"cannot reach upstream: {type(exc).__name__}") from None
        seconds = self._monotonic() - started
        body = response.content
        status = response.status_code
        size = len(body) if window is not None else None  # the gauge is the usages' size
        log.debug("upstream response", extra={"fields": {
            "account": account.name, "path": path,
            "window": describe_window(window) if window is not None else None,
            "status": status, "bytes": len(body), "duration_seconds": round(seconds, 3)}})
        if status == 200:
            try:
                result = read(body)
            except (ValidationError, InvalidResponse) as exc:
                self._record(account.name, "invalid_response", seconds, size)
                raise UpstreamError(FailureReason.INVALID_RESPONSE,
                                    _validation_summary(exc), status=status) from None
            self._record(account.name, "200", seconds, size)
            return result, len(body)

        self._record(account.name, str(status), seconds, size)
        if window is not None and (status == 413 or (status >= 500 and _speaks_of_size(body))):
            raise ResponseTooLarge(window)
        if status in (401, 403):
            raise UpstreamError(FailureReason.AUTH, "upstream refused the credentials "
                                f"(HTTP {status}); check the API key and secret", status=status)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._wall())
            hint = f", retry after {retry_after:g}s" if retry_after is not None else ""
            raise UpstreamError(FailureReason.RATE_LIMITED,
                                f"upstream rate-limited us (HTTP 429{hint})",
                                retry_after=retry_after, status=status)
        if status >= 500:
            raise UpstreamError(FailureReason.SERVER_ERROR, f"upstream failed (HTTP {status})",
                                status=status)
        said = _message_of(body)
        raise UpstreamError(FailureReason.CLIENT_ERROR,
                            f"upstream rejected the request (HTTP {status})"
                            + (f": {said}" if said else ""), status=status)


def _message_of(body: bytes, limit: int = 200) -> str:
    """The API's own words for a refusal (``{"message": ...}``), on one line, or ""."""
    try:
        document = json.loads(body[:20000])
    except ValueError:
        return ""
    said = document.get("message") or document.get("error") if isinstance(document, dict) \
        else None
    if not isinstance(said, str):
        return ""
    line = " ".join(said.split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _speaks_of_size(body: bytes) -> bool:
    text = body[:2000].decode("utf-8", "replace").lower()
    return any(word in text for word in _TOO_LARGE_WORDS)


def _validation_summary(exc: Exception) -> str:
    """One line: where the response is invalid (no values: they may be personal data)."""
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False)
        if errors:
            first = errors[0]
            loc = ".".join(str(part) for part in first["loc"])
            more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
            if first["type"] == "json_invalid":
                return "invalid response: the body is not valid JSON"
            return f"invalid response: {loc}: {first['msg']}{more}"
    return f"invalid response: {exc}"
