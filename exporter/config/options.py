"""The settings as the user names them: one flag each, also an environment variable
and a YAML path (``--cache.ttl``, ``SCENARIO_EXPORTER_CACHE_TTL``, ``cache: {ttl: 5m}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from exporter.core.account import DEFAULT_API_URL

ENV_PREFIX = "SCENARIO_EXPORTER_"


@dataclass(frozen=True)
class Option:
    """A setting as the user names it: flag, environment variable, YAML path."""

    flag: str  # without the leading dashes: "cache.ttl"
    field: str  # Settings field
    help: str
    kind: Literal["value", "bool"] = "value"
    metavar: str = "VALUE"
    # An environment variable of Scenario's SDK read below every source of the
    # exporter's own (flag, SCENARIO_EXPORTER_*, the YAML file).
    sdk_env: str | None = None

    @property
    def env(self) -> str:
        return ENV_PREFIX + re.sub(r"[.-]", "_", self.flag).upper()

    @property
    def yaml_path(self) -> tuple[str, ...]:
        return tuple(self.flag.split("."))


OPTIONS: tuple[Option, ...] = (
    Option("web.listen-address", "listen_address",
           "Address on which to expose metrics and the landing page (default :10097).",
           metavar="[HOST]:PORT"),
    Option("web.telemetry-path", "telemetry_path",
           "Path under which to expose metrics (default /metrics).", metavar="PATH"),
    Option("web.config.file", "web_config_file",
           "Path to a Prometheus exporter-toolkit web config (TLS, basic auth, headers).",
           metavar="FILE"),
    Option("web.health-without-auth", "web_health_without_auth",
           "Serve /-/healthy and /-/ready without basic auth (for kubelet probes).",
           kind="bool"),
    Option("web.read-header-timeout", "web_header_timeout",
           "Close a connection that has not sent a whole request header within this time, "
           "also between requests on a kept-alive connection (default 10s).",
           metavar="DURATION"),
    Option("web.max-threads", "web_max_threads",
           "Worker threads answering requests; more requests wait their turn (default 8).",
           metavar="N"),
    Option("web.external-address", "external_address",
           "HOST:PORT that /sd gives Prometheus as the target of each account (default: the "
           "address the request for /sd came to).", metavar="HOST:PORT"),
    Option("shard", "shard",
           "Serve only the accounts of shard I of N (a stable hash of the account name): "
           "run N exporters with 0/N ... N-1/N over one configuration (default 0/1: all).",
           metavar="I/N"),
    Option("demo", "demo",
           "Serve a built-in simulated Scenario account; no credentials needed.", kind="bool"),
    Option("log.level", "log_level", "Log level: debug, info, warning, error (default info).",
           metavar="LEVEL"),
    Option("log.format", "log_format", "Log format: logfmt or json (default logfmt).",
           metavar="FORMAT"),
    Option("cache.ttl", "cache_ttl",
           "How long upstream data is served before a scrape triggers a refresh (default 5m).",
           metavar="DURATION"),
    Option("cache.max-stale", "cache_max_stale",
           "Age after which business series are withdrawn when refreshes fail (default 2h).",
           metavar="DURATION"),
    Option("period", "period",
           "Period whose running total is exported: billing (the team's own, read from "
           "Scenario), auto (billing when the key can read it, else month), month or day "
           "(default auto).",
           metavar="PERIOD"),
    Option("period.anchor-day", "period_anchor_day",
           "Day of the month (1-28) on which a monthly period starts (default 1).",
           metavar="DAY"),
    Option("scenario.api-url", "api_url",
           f"Base URL of Scenario's API (default {DEFAULT_API_URL}; the SDK's "
           "SCENARIO_BASE_URL when only that is set).", metavar="URL",
           sdk_env="SCENARIO_BASE_URL"),
    Option("team.refresh-interval", "team_refresh_interval",
           "How often the team endpoints (billing period, allowance, prepaid units, caps of "
           "keys, members and projects) are read (default 15m).", metavar="DURATION"),
    Option("upstream.timeout", "upstream_timeout",
           "Timeout of one upstream request (default 30s).", metavar="DURATION"),
    Option("upstream.ca-file", "upstream_ca_file",
           "PEM file of CA certificates trusted for the Scenario API in addition to the "
           "default ones (a TLS-intercepting proxy's CA).", metavar="FILE"),
    Option("upstream.max-requests-per-hour", "max_requests_per_hour",
           "Hard cap on upstream requests per account and hour (default 60).", metavar="N"),
    Option("limits.max-models", "max_models",
           "Models per account with a series of their own; the rest fold into __other__ "
           "(default 500).", metavar="N"),
    Option("limits.max-users", "max_users",
           "Users per account with a series of their own; the rest fold into __other__ "
           "(default 1000).", metavar="N"),
    Option("price.per-creative-unit", "price_per_creative_unit",
           "Contract price of one Creative Unit, for every account that sets none "
           "(exported as scenario_creative_unit_price; money beside CU).", metavar="AMOUNT"),
    Option("price.currency", "price_currency",
           "ISO 4217 currency of the price (default USD).", metavar="CODE"),
    Option("metrics.user-identity", "user_identity",
           "Add user_name and email (personal data) to scenario_user_info.", kind="bool"),
)

# Settings of the single account made from the environment (no YAML accounts).
BUDGET_FLAG = "budget.creative-units"
ACCOUNT_OPTIONS: tuple[Option, ...] = (
    Option(BUDGET_FLAG, "budget_creative_units",
           "Monthly Creative Unit budget of the single account (exported as "
           "scenario_budget_creative_units).", metavar="CU"),
    Option("scenario.project-ids", "project_ids",
           "Comma-separated Scenario project ids to restrict the single account to.",
           metavar="IDS"),
    Option("scenario.team-id", "team_id",
           "Scenario team whose usage the single account reads (default: the key's team).",
           metavar="ID"),
    Option("scenario.user-ids", "user_ids",
           "Comma-separated Scenario user ids to restrict the single account's usage to.",
           metavar="IDS"),
)

CREDENTIAL_HELP = (
    "set SCENARIO_API_KEY (or SCENARIO_API_KEY_FILE) and SCENARIO_API_SECRET "
    "(or SCENARIO_API_SECRET_FILE), "
    "list accounts in --config.file, or try --demo"
)
