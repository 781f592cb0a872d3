"""The validated settings of one exporter process, and the one-line description of a bad one.

Every setting has one name, its flag (``--cache.ttl``); :mod:`exporter.config.load`
collects the values from flags, environment and the YAML file. Any invalid
value is reported by :func:`describe_error` as one line that names the setting,
where it came from, and what is wrong.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter.config.options import ACCOUNT_OPTIONS, OPTIONS
from exporter.core.account import (
    CURRENCY_PATTERN,
    DEFAULT_API_URL,
    DEFAULT_CURRENCY,
    AccountConfig,
    check_api_url,
)
from exporter.core.durations import parse_duration
from exporter.core.shard import Shard


def parse_listen_address(address: str) -> tuple[str, int]:
    """Split a Go-style listen address (``:10097``, ``127.0.0.1:0``, ``[::1]:9000``)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError("must be host:port, e.g. :10097 or 127.0.0.1:10097")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


class Settings(BaseModel):
    """The validated configuration of one exporter process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_address: str = ":10097"
    telemetry_path: str = "/metrics"
    web_config_file: Path | None = None
    web_health_without_auth: bool = False
    web_header_timeout: float = Field(default=10.0, gt=0)
    web_max_threads: int = Field(default=8, ge=1, le=256)
    external_address: str | None = None
    shard: Shard = Shard()
    demo: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["logfmt", "json"] = "logfmt"
    cache_ttl: float = Field(default=300.0, gt=0)
    cache_max_stale: float = Field(default=7200.0, gt=0)
    period: Literal["auto", "billing", "month", "day"] = "auto"
    period_anchor_day: int = Field(default=1, ge=1, le=28)
    api_url: str = DEFAULT_API_URL
    team_refresh_interval: float = Field(default=900.0, gt=0)
    upstream_timeout: float = Field(default=30.0, gt=0)
    upstream_ca_file: Path | None = None
    max_requests_per_hour: int = Field(default=60, ge=1)
    max_models: int = Field(default=500, ge=1)
    max_users: int = Field(default=1000, ge=1)
    user_identity: bool = False
    price_per_creative_unit: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    price_currency: str = Field(default=DEFAULT_CURRENCY, pattern=CURRENCY_PATTERN)
    accounts: tuple[AccountConfig, ...] = ()

    @field_validator("cache_ttl", "cache_max_stale", "upstream_timeout", "web_header_timeout",
                     "team_refresh_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("shard", mode="before")
    @classmethod
    def _shard(cls, value: Any) -> Shard:
        return value if isinstance(value, Shard) else Shard.parse(str(value))

    @field_validator("external_address")
    @classmethod
    def _external(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 \
                or any(c in value for c in "/ ?#@"):
            raise ValueError("must be HOST:PORT as Prometheus reaches this exporter, "
                             "e.g. exporter-0.exporter:10097")
        return value

    @field_validator("listen_address")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen_address(value)
        return value

    @field_validator("upstream_ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                ssl.create_default_context().load_verify_locations(cafile=value)
            except ssl.SSLError:  # an OSError too: first
                raise ValueError(f"{value} holds no PEM CA certificate") from None
            except OSError as exc:
                raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None
        return value

    @field_validator("telemetry_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or value in {"/", "/-/healthy", "/-/ready"}:
            raise ValueError("must start with '/' and not be '/', '/-/healthy' or '/-/ready'")
        return value

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_api_url(value)

    @model_validator(mode="after")
    def _stale_after_ttl(self) -> Settings:
        if self.cache_max_stale < self.cache_ttl:
            raise ValueError("cache.max-stale must be at least cache.ttl")
        return self


def describe_error(exc: ValidationError, sources: Mapping[str, str], prefix: str = "") -> str:
    """One line for the first validation error: which setting, from where, what is wrong."""
    error = exc.errors(include_url=False, include_input=False)[0]
    cause = error.get("ctx", {}).get("error")
    # Our validators' own words, else pydantic's ("Input should be 'a' or 'b'").
    message = str(cause) if isinstance(cause, Exception) else \
        str(error["msg"]).replace("Input should be", "must be")
    if not error["loc"]:
        # Model-level checks name their field first ("api_secret_file: ...").
        field_name, sep, rest = message.partition(": ")
        if sep and field_name in sources:
            return f"{sources[field_name]}: {rest}"
        return f"{prefix}: {message}" if prefix else message
    setting = str(error["loc"][0])
    if prefix:
        label = f"{prefix}: {setting}"
    elif setting in sources:
        label = sources[setting]
    else:
        flag = next((o.flag for o in OPTIONS + ACCOUNT_OPTIONS if o.field == setting), None)
        label = f"--{flag}" if flag else setting
    return f"{label}: {message}"
