"""Which Scenario accounts to watch, and with which credentials.

Credentials come from the environment (``SCENARIO_API_KEY``, the SDK's
``SCENARIO_SDK_API_KEY``, or files) or from the YAML file's ``accounts`` list,
never from flags (flags show up in ``ps``). ``--demo`` watches one built-in
account whose fixed credentials only the demo upstream accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from exporter.config.options import CREDENTIAL_HELP
from exporter.config.settings import describe_error
from exporter.core.account import AccountConfig
from exporter.core.errors import ConfigError

# The account --demo watches: fixed credentials that only the demo upstream accepts.
DEMO_API_KEY = "demo-key"
DEMO_API_SECRET = "demo-secret"
DEMO_BUDGET_CU = 1_200_000.0


def demo_account_config(budget_creative_units: float | None = None) -> AccountConfig:
    """The account ``--demo`` watches; its budget can still be set by flag."""
    budget = DEMO_BUDGET_CU if budget_creative_units is None else budget_creative_units
    return AccountConfig(name="demo", api_key=DEMO_API_KEY,
                         api_secret=SecretStr(DEMO_API_SECRET), budget_creative_units=budget)


def configured_accounts(document: Mapping[str, Any], env: Mapping[str, str],
                        account_settings: Mapping[str, tuple[Any, str]],
                        config_file: Path | None, *, demo: bool) -> tuple[AccountConfig, ...]:
    """The accounts to watch: the demo's, the file's ``accounts`` list, or one from the
    environment's credentials. *account_settings* are the single-account options
    (budget, project ids) with where each came from."""
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
                raise ConfigError(describe_error(exc, {}, prefix=where)) from None
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
        raise ConfigError(describe_error(exc, field_sources)) from None
