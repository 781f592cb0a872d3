"""The one source of the mixin's knobs: selectors, labels, windows and thresholds.

Like ``config.libsonnet`` of node_exporter's node-mixin: the dashboards, the
recording rules and the alerts read these values and never restate them. To
change a threshold, change it here and run ``python -m mixin``; the rule files,
the dashboards and the Helm chart's copies follow.

Metric names are not knobs: they are the exporter's contract (docs/metrics.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The exporter's period counters (docs/metrics.md, "Business series"), each with
# the label that tells its series apart within an account. A counter's value is
# the sum since the period began: it falls back when a period starts, and may go
# down when upstream revises a value (see promql.period_change). Written out as
# data rather than imported from the exporter package, which this developer
# tool does not depend on; a test holds it against the exporter's own specs.
BUSINESS_COUNTERS: dict[str, str] = {
    "scenario_model_cost_creative_units_total": "model_id",
    "scenario_model_cost_by_api_key_creative_units_total": "model_id",
    "scenario_model_discount_creative_units_total": "model_id",
    "scenario_model_discount_by_api_key_creative_units_total": "model_id",
    "scenario_model_jobs_total": "model_id",
    "scenario_assets_created_total": "kind",
    "scenario_assets_created_by_api_key_total": "kind",
    "scenario_nsfw_assets_total": "label",
    "scenario_nsfw_assets_by_api_key_total": "label",
    "scenario_usage_total": "usage_name",
    "scenario_usage_by_api_key_total": "usage_name",
    "scenario_usage_cost_creative_units_total": "usage_name",
    "scenario_usage_credit_creative_units_total": "usage_name",
    "scenario_usage_cost_by_api_key_creative_units_total": "usage_name",
    "scenario_usage_credit_by_api_key_creative_units_total": "usage_name",
    "scenario_usage_discount_creative_units_total": "usage_name",
    "scenario_usage_discount_by_api_key_creative_units_total": "usage_name",
    "scenario_quality_gate_assets_total": "verdict",
    "scenario_quality_gate_assets_by_api_key_total": "verdict",
    "scenario_user_consumption_creative_units_total": "user_id",
    "scenario_user_discount_creative_units_total": "user_id",
    # Two labels tell its series apart: a user's CU per billing action.
    "scenario_user_consumption_by_action_creative_units_total": "user_id, action",
}


def id_labels(counter: str) -> tuple[str, ...]:
    """The labels that tell business *counter*'s series apart within an account, in
    order: ``("model_id",)``, ``("user_id", "action")``."""
    return tuple(label.strip() for label in BUSINESS_COUNTERS[counter].split(","))


# The gauge that moves only when a new period starts: what tells a rollover
# from a downward revision.
PERIOD_START = "scenario_period_start_timestamp_seconds"

# The team's consumption gauges (docs/metrics.md, "the team's plan, prepaid units
# and caps"), each with its cap and the label that tells its series apart. They
# are upstream's figures for the billing period: they fall back when a new
# billing period starts, which BILLING_START tells.
BILLING_START = "scenario_billing_period_start_timestamp_seconds"
BILLING_END = "scenario_billing_period_end_timestamp_seconds"


@dataclass(frozen=True)
class CappedConsumption:
    """A consumption gauge of the team endpoints, its cap, and its id label."""

    kind: str  # the value of the cap alerts' ``entity`` label
    consumption: str
    cap: str
    id_label: str


CAPPED: tuple[CappedConsumption, ...] = (
    CappedConsumption("api_key", "scenario_api_key_consumption_creative_units",
                      "scenario_api_key_max_consumption_creative_units", "api_key_id"),
    CappedConsumption("member", "scenario_member_consumption_creative_units",
                      "scenario_member_max_consumption_creative_units", "user_id"),
    CappedConsumption("project", "scenario_project_consumption_creative_units",
                      "scenario_project_max_consumption_creative_units", "project_id"),
)

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}


def seconds(duration: str) -> int:
    """The number of seconds in a Prometheus duration such as ``1h`` or ``1h30m``."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + unit for n, unit in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in parts)


def in_words(duration: str, *, preceded_by: str = "") -> str:
    """A one-unit duration as alert texts say it: ``15m`` -> ``15 minutes``, ``1h`` ->
    ``an hour``; preceded by ``the last``, ``1h`` -> ``the last hour``."""
    match = re.fullmatch(r"(\d+)([smhdw])", duration)
    if match is None:
        raise ValueError(f"not a one-unit duration: {duration!r}")
    count, word = int(match[1]), _UNIT_WORDS[match[2]]
    if count > 1:
        return f"{preceded_by} {count} {word}s".lstrip()
    if preceded_by:
        return f"{preceded_by} {word}"
    return ("an " if word == "hour" else "a ") + word


@dataclass(frozen=True)
class RateWindow:
    """A rate window: its PromQL range, and its length in seconds as a PromQL number."""

    range: str
    seconds: str

    @classmethod
    def fixed(cls, duration: str) -> RateWindow:
        """A window of a fixed length, as rules use: ``1h`` is 3600 seconds."""
        return cls(duration, str(seconds(duration)))


@dataclass(frozen=True)
class MixinConfig:
    """Every knob of the dashboards and rules, with the shipped defaults."""

    # The label that tells deployments apart (staging and production, two
    # clusters behind one Thanos): a dashboard variable of that name selects
    # it, and every figure is kept apart by it. Rules keep every label anyway.
    deployment_label: str = "job"
    # The labels that only say which replica serves a series: the target's
    # address, and the pod that the Prometheus Operator adds. Replicas serve
    # the same figures, so queries drop these labels before summing or rating.
    replica_labels: tuple[str, ...] = ("instance", "pod")
    # The exporter's scrape targets, for ScenarioExporterDown: it must match
    # the chart's job names (the Service's name) and the documented examples.
    exporter_selector: str = 'job=~".*scenario.*"'

    # -- dashboards -------------------------------------------------------------
    # The shortest window of a rate panel: the exporter refreshes its data every
    # --cache.ttl (5m by default); a shorter window alternates between 0 and spikes.
    min_interval: str = "5m"
    # Grafana's rate window, and its length in seconds ($__rate_interval_ms is
    # a global variable of Grafana's Prometheus data source).
    dashboard_window: RateWindow = RateWindow("$__rate_interval", "($__rate_interval_ms / 1000)")
    dashboard_refresh: str = "5m"
    dashboard_time_from: str = "now-7d"
    top_models: int = 10
    # The API gateway's limit on a synchronous response body.
    response_limit_bytes: int = 6_000_000

    # -- recording rules --------------------------------------------------------
    # Both far longer than --cache.ttl. The day-long window of the projection
    # flattens a studio's day/night cycle.
    short_window: str = "1h"
    long_window: str = "1d"

    # -- alerts ------------------------------------------------------------------
    runbook_url: str = ("https://github.com/scenario-exporter/scenario-exporter/blob/main/"
                        "docs/runbook.md")
    exporter_down_for: str = "10m"
    # Three refreshes at the default --cache.ttl of 5m.
    refresh_failing_for: str = "15m"
    data_stale_after: str = "1h"
    data_stale_for: str = "5m"
    # The exporter's default --cache.max-stale, past which it withdraws the
    # business series (dashboards draw the data age red from there).
    exporter_max_stale: str = "2h"
    rate_limited_window: str = "15m"
    rate_limited_for: str = "30m"
    budget_exhausted_for: str = "5m"
    budget_forecast_for: str = "3h"
    # ScenarioSpendSpike: the last hour's rate against the baseline's average
    # and its busiest hour, above a floor, with a minimum of history.
    spike_baseline: str = "1w"
    spike_over_average: float = 3
    spike_over_busiest_hour: float = 1.5
    spike_floor_per_hour: float = 100
    spike_history: str = "1d"
    spike_for: str = "15m"
    nsfw_window: str = "1h"

    # -- money ---------------------------------------------------------------------
    # How far back the money rules look for their own last value (and the CU it
    # priced): a gap in the data shorter than this (an exporter restarted with a
    # new price, a missed scrape) is bridged; a longer one starts the figure again
    # from the CU this period at the current price.
    money_history: str = "1d"

    # -- the team's plan, prepaid units and caps --------------------------------
    # ScenarioCreativeUnitsRunningOut: allowance and prepaid units gone before the
    # billing period ends, at the pace of the long window, for this long.
    units_running_out_for: str = "3h"
    # ScenarioPrepaidUnitsExpiring: a pack with units left expires within this.
    prepaid_expiry_within: str = "7d"
    # ScenarioCapNearlyReached: an API key, member or project has used this share
    # of its cap (0.9 = 90 %), for this long (about one --team.refresh-interval).
    cap_used_ratio: float = 0.9
    cap_used_for: str = "15m"
    # ScenarioCapForecastExceeded: on course to cross its cap, for this long.
    cap_forecast_for: str = "3h"
    # ScenarioPaymentOrSubscriptionIssue: the subscription statuses that are fine
    # (an empty one: upstream said nothing, as for a team without subscription).
    subscription_ok: tuple[str, ...] = ("active",)
    payment_issue_for: str = "15m"
    # ScenarioTeamEndpointDown: a team endpoint failing for this long.
    team_endpoint_down_for: str = "30m"

    def id_label(self, counter: str) -> str:
        """The label that identifies each series of business *counter*."""
        return BUSINESS_COUNTERS[counter]

    def runbook(self, alert: str) -> str:
        """The address of *alert*'s section of the runbook."""
        return f"{self.runbook_url}#{alert.lower()}"
