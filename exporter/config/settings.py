"""Configuration: flags over environment over a YAML file, validated once at start-up.

Every setting has one name, its flag (``--cache.ttl``). The same setting can be
given in the environment as ``SCENARIO_EXPORTER_CACHE_TTL`` and in the YAML file
as ``cache: {ttl: 5m}``. Credentials come from the environment or the YAML file's
``accounts`` list, never from flags (flags show up in ``ps``).

Any invalid value raises :class:`ConfigError` with one line that names the
setting, where it came from, and what is wrong.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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

from exporter.config.options import ACCOUNT_OPTIONS, CREDENTIAL_HELP, OPTIONS
from exporter.config.yamlfile import MAX_BYTES, Schema, YAMLFileError, load_mapping, unknown_key
from exporter.core.account import DEFAULT_API_URL, AccountConfig, check_api_url
from exporter.core.logs import mask_value
from exporter.upstream.demo import demo_account_config

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
                   "y": 31536000}


class ConfigError(Exception):
    """An invalid configuration; ``str()`` is the one line shown to the user."""


def parse_duration(text: str | int | float) -> float:
    """Parse a Prometheus-style duration (``90s``, ``5m``, ``1h30m``) into seconds.

    Bare numbers are seconds, which is what people type in YAML.
    """
    if isinstance(text, bool):
        raise ValueError("must be a duration such as 90s, 5m or 2h")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        value = text.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", value):
            seconds = float(value)
        else:
            parts = _DURATION_PART.findall(value)
            if not parts or "".join(n + u for n, u in parts) != value:
                raise ValueError(f"{mask_value(value)} is not a duration such as 90s, 5m or 2h")
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds the way they are written in flags (``300`` -> ``5m``)."""
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


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
    demo: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["logfmt", "json"] = "logfmt"
    cache_ttl: float = Field(default=300.0, gt=0)
    cache_max_stale: float = Field(default=7200.0, gt=0)
    period: Literal["month", "day"] = "month"
    period_anchor_day: int = Field(default=1, ge=1, le=28)
    api_url: str = DEFAULT_API_URL
    upstream_timeout: float = Field(default=30.0, gt=0)
    upstream_ca_file: Path | None = None
    max_requests_per_hour: int = Field(default=60, ge=1)
    max_models: int = Field(default=500, ge=1)
    max_users: int = Field(default=1000, ge=1)
    user_identity: bool = False
    accounts: tuple[AccountConfig, ...] = ()

    @field_validator("cache_ttl", "cache_max_stale", "upstream_timeout", "web_header_timeout",
                     mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

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


@dataclass
class _Layer:
    """Raw values collected from one source, remembered with where they came from."""

    values: dict[str, tuple[Any, str]] = field(default_factory=dict)

    def put(self, name: str, value: Any, source: str) -> None:
        self.values[name] = (value, source)


def _yaml_lookup(document: Mapping[str, Any], path: Sequence[str]) -> tuple[bool, Any]:
    """Find a dotted flag in YAML, nested (``cache: {ttl: 5m}``) or flat (``cache.ttl``)."""
    flat = ".".join(path)
    for key in (flat, flat.replace("-", "_")):
        if key in document:
            return True, document[key]
    node: Any = document
    for part in path:
        if not isinstance(node, Mapping):
            return False, None
        for key in (part, part.replace("-", "_")):
            if key in node:
                node = node[key]
                break
        else:
            return False, None
    return True, node


def load_yaml(path: Path) -> dict[str, Any]:
    """Read the YAML configuration file; an unreadable or malformed file is a ConfigError."""
    try:
        with path.open("rb") as file:
            text = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"--config.file: cannot read {path}: {exc.strerror or exc}") from None
    try:
        return load_mapping(text)
    except YAMLFileError as exc:
        raise ConfigError(f"--config.file: {path}: {exc}") from None


def _file_schema() -> Schema:
    """Every key the file may hold: each flag nested or flat, with '-' or '_', and accounts."""
    root: dict[str, Any] = {}
    for option in OPTIONS + ACCOUNT_OPTIONS:
        root.update(dict.fromkeys({option.flag, option.flag.replace("-", "_")}))
        node = root
        *parents, leaf = option.yaml_path
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
            node[part] = node[part.replace("-", "_")] = child
            node = child
        for key in (leaf, leaf.replace("-", "_")):
            node.setdefault(key, None)
    root["accounts"] = [dict.fromkeys(AccountConfig.model_fields)]
    return root


def build_settings(flags: Mapping[str, Any], env: Mapping[str, str],
                   config_file: Path | None = None) -> Settings:
    """Merge the three layers (flags > environment > YAML) and validate them.

    *flags* maps flag names (``"cache.ttl"``) to the values given on the
    command line; flags that were not given are absent.
    """
    document = load_yaml(config_file) if config_file is not None else {}
    unknown = unknown_key(document, _file_schema())
    if unknown:
        raise ConfigError(f"--config.file: {config_file}: {unknown[0]}: {unknown[1]}")

    layer = _Layer()
    for option in OPTIONS + ACCOUNT_OPTIONS:
        found, value = _yaml_lookup(document, option.yaml_path)
        if found and not isinstance(value, Mapping):
            layer.put(option.flag, value, f"{option.flag} in {config_file}")
        if option.env in env:
            value = env[option.env]
            if option.kind == "bool":
                value = value.strip().lower() in {"1", "true", "yes", "on"}
            layer.put(option.flag, value, option.env)
        if option.flag in flags:
            layer.put(option.flag, flags[option.flag], f"--{option.flag}")

    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        if option.flag in layer.values:
            raw[option.field], sources[option.field] = layer.values[option.flag]

    # Settings first, so that a bad value is reported before missing credentials;
    # each account is validated on its own, and added to the settings as it is.
    try:
        settings = Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources)) from None
    accounts = _accounts(document, env, layer, config_file, demo=settings.demo)
    return settings.model_copy(update={"accounts": accounts})


def _accounts(document: Mapping[str, Any], env: Mapping[str, str], layer: _Layer,
              config_file: Path | None, *, demo: bool) -> tuple[AccountConfig, ...]:
    account_settings = {o.field: layer.values[o.flag] for o in ACCOUNT_OPTIONS
                        if o.flag in layer.values}
    budget = account_settings.get("budget_creative_units")
    listed = document.get("accounts")
    if demo:
        return (demo_account_config(budget[0] if budget else None),)
    if listed is not None:
        if not isinstance(listed, list) or not listed:
            raise ConfigError(f"accounts in {config_file}: must be a non-empty list")
        accounts = []
        for index, entry in enumerate(listed):
            where = f"accounts[{index}] in {config_file}"
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{where}: must be a mapping with name, api_key, api_secret")
            fields = dict(entry)
            if budget is not None and len(listed) == 1 and "budget_creative_units" not in fields:
                fields["budget_creative_units"] = budget[0]
            try:
                accounts.append(AccountConfig(**fields))
            except ValidationError as exc:
                raise ConfigError(_describe(exc, {}, prefix=where)) from None
        if budget is not None and len(listed) > 1:
            raise ConfigError(f"{budget[1]}: several accounts are configured; set "
                              f"budget_creative_units on each account in {config_file}")
        names = [a.name for a in accounts]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"accounts: the name {name!r} is used twice")
        return tuple(accounts)

    key = env.get("SCENARIO_API_KEY") or env.get("SCENARIO_SDK_API_KEY")
    key_file = env.get("SCENARIO_API_KEY_FILE")
    secret = env.get("SCENARIO_API_SECRET") or env.get("SCENARIO_SDK_API_SECRET")
    secret_file = env.get("SCENARIO_API_SECRET_FILE")
    if not key and not key_file and not secret and not secret_file:
        raise ConfigError(f"no Scenario credentials: {CREDENTIAL_HELP}")
    if not key and not key_file:
        raise ConfigError("SCENARIO_API_KEY: missing (the secret is set but not the key; "
                          "or set SCENARIO_API_KEY_FILE)")
    if key and key_file:
        raise ConfigError("SCENARIO_API_KEY_FILE: set it or SCENARIO_API_KEY, not both")
    if not secret and not secret_file:
        raise ConfigError("SCENARIO_API_SECRET: missing (set it, or SCENARIO_API_SECRET_FILE)")
    single: dict[str, Any] = {"name": "default"}
    if key_file:
        single["api_key_file"] = key_file
    else:
        single["api_key"] = key
    if secret_file:
        single["api_secret_file"] = secret_file
    else:
        single["api_secret"] = secret
    field_sources = {"api_secret_file": "SCENARIO_API_SECRET_FILE",
                     "api_key_file": "SCENARIO_API_KEY_FILE",
                     "api_key": "SCENARIO_API_KEY"}
    for name, (value, source) in account_settings.items():
        single[name] = value
        field_sources[name] = source
    try:
        return (AccountConfig(**single),)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, field_sources)) from None


def _describe(exc: ValidationError, sources: Mapping[str, str], prefix: str = "") -> str:
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


def settings_from_environment(flags: Mapping[str, Any], config_file: str | None) -> Settings:
    """Build settings for the CLI from its flags, ``os.environ`` and the optional file."""
    path = config_file or os.environ.get("SCENARIO_EXPORTER_CONFIG_FILE")
    return build_settings(flags, os.environ, Path(path) if path else None)
