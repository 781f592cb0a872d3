"""Configuration: flags over environment over a YAML file, validated once at start-up.

Every setting has one name, its flag (``--cache.ttl``). The same setting can be
given in the environment as ``SCENARIO_EXPORTER_CACHE_TTL`` and in the YAML file
as ``cache: {ttl: 5m}``. Any invalid value raises :class:`ConfigError` with one
line that names the setting, where it came from, and what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from exporter.config.accounts import configured_accounts
from exporter.config.options import ACCOUNT_OPTIONS, OPTIONS
from exporter.config.settings import Settings, describe_error
from exporter.config.yamlfile import MAX_BYTES, Schema, YAMLFileError, load_mapping, unknown_key
from exporter.core.account import AccountConfig
from exporter.core.errors import ConfigError


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
        if option.sdk_env is not None and env.get(option.sdk_env):
            layer.put(option.flag, env[option.sdk_env], option.sdk_env)
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
        raise ConfigError(describe_error(exc, sources)) from None
    account_settings = {o.field: layer.values[o.flag] for o in ACCOUNT_OPTIONS
                        if o.flag in layer.values}
    accounts = configured_accounts(document, env, account_settings, config_file,
                                   demo=settings.demo)
    return settings.model_copy(update={"accounts": tuple(
        _priced(account, settings) for account in accounts)})


def _priced(account: AccountConfig, settings: Settings) -> AccountConfig:
    """*account* with its price: its own, else the global one, in its currency or the
    global one."""
    price = account.price_per_creative_unit or settings.price_per_creative_unit
    if price is None:
        return account
    return account.model_copy(update={
        "price_per_creative_unit": price,
        "price_currency": account.price_currency or settings.price_currency})


def settings_from_environment(flags: Mapping[str, Any], config_file: str | None) -> Settings:
    """Build settings for the CLI from its flags, ``os.environ`` and the optional file."""
    path = config_file or os.environ.get("SCENARIO_EXPORTER_CONFIG_FILE")
    return build_settings(flags, os.environ, Path(path) if path else None)
