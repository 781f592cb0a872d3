"""What can go wrong, named once: failure reasons, upstream errors, bad configuration.

Every layer raises these and none needs another layer to know them: the
client raises :class:`UpstreamError` with a :class:`FailureReason`, the
scheduler counts it under that reason, the backfill and ``check`` report it;
a bad setting anywhere is a :class:`ConfigError`, which the command line alone
turns into a message and an exit code (``exporter.cli.exit``).
"""

from __future__ import annotations

from enum import Enum

from exporter.core.period import PeriodWindow, describe_window


class FailureReason(str, Enum):
    """Why a refresh failed: the ``reason`` label of ``scenario_exporter_refresh_failures_total``.

    A ``str`` enum: a reason equals, formats and labels as its value (``"auth"``).
    """

    AUTH = "auth"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    CLIENT_ERROR = "client_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    INVALID_RESPONSE = "invalid_response"
    TOO_LARGE = "too_large"
    REQUEST_CAP = "request_cap"
    INTERNAL_ERROR = "internal_error"

    def __str__(self) -> str:
        return self.value

    @property
    def may_pass(self) -> bool:
        """Whether the same request may well succeed later (a batch job retries these)."""
        return self in _PASSING


_PASSING = frozenset({FailureReason.RATE_LIMITED, FailureReason.SERVER_ERROR,
                      FailureReason.TIMEOUT, FailureReason.CONNECTION_ERROR})


class InvalidResponse(ValueError):
    """The upstream answer cannot be turned into valid totals."""


class UpstreamError(Exception):
    """A call or a refresh that failed, with its reason and, for 429, the server's wait."""

    def __init__(self, reason: FailureReason | str, message: str,
                 retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = FailureReason(reason)
        self.retry_after = retry_after
        self.status = status  # the HTTP status, when upstream answered


class ResponseTooLarge(UpstreamError):
    """The response for *window* exceeds what the API gateway can send (HTTP 413)."""

    def __init__(self, window: PeriodWindow) -> None:
        super().__init__(FailureReason.TOO_LARGE, "the response is too large for the API "
                                                  f"gateway ({describe_window(window)})")
        self.window = window


class ConfigError(Exception):
    """Invalid configuration or arguments, found before anything runs.

    ``str()`` is the one line shown to the user: the setting, where it came
    from, what is wrong. The command line exits with code 2.
    """


class StartupError(Exception):
    """A valid configuration that cannot start (the listen address is taken): exit code 1."""
