"""The business counters: each one's name, help, and where its values come from.

Every counter is the period-to-date sum of an upstream figure per id (a model,
a usage name, a user and an action, ...), so its ``_created`` is the period
start and it resets when a new period begins. This table is the metric
contract's business counters (docs/metrics.md); the mixin's table of counters
is held against it by a test.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from exporter.core.values import Totals, UsageSnapshot


@dataclass(frozen=True)
class CounterSpec:
    """One business counter: its name (without ``_total``), help, and values.

    *section* is the snapshot's mapping of totals per id (labelled *labels*),
    *field* the totals' field (or property) served; *priced* serves only the
    usage names whose points carry Creative Units (an older upstream prices
    none). Section ``user_actions`` holds CU per user and billing action.
    """

    name: str
    documentation: str
    section: str
    labels: tuple[str, ...]
    field: str = ""
    priced: bool = False

    def values(self, snapshot: UsageSnapshot) -> Iterator[tuple[tuple[str, ...], float]]:
        """``(label values, value)`` of every series of *snapshot*, in label order."""
        if self.section == "user_actions":
            for user_id, actions in sorted(snapshot.user_actions.items()):
                for action, value in sorted(actions.items()):
                    yield (user_id, action), value
            return
        totals: Mapping[str, Totals] = getattr(snapshot, self.section)
        for key in sorted(totals):
            if self.priced and key not in snapshot.priced_usages:
                continue
            yield (key,), getattr(totals[key], self.field)


COUNTERS: tuple[CounterSpec, ...] = (
    CounterSpec("scenario_model_cost_creative_units",
                "Creative Units spent per model in the current period.", "models", ("model_id",),
                "cost"),
    CounterSpec("scenario_model_cost_by_api_key_creative_units",
                "Creative Units spent per model through API keys in the current period.",
                "models", ("model_id",), "cost_api_key"),
    CounterSpec("scenario_model_discount_creative_units",
                "Creative Units discounted per model in the current period (magnitude).",
                "models", ("model_id",), "discount"),
    CounterSpec("scenario_model_discount_by_api_key_creative_units",
                "Creative Units discounted per model on API-key usage in the current period "
                "(magnitude).", "models", ("model_id",), "discount_api_key"),
    CounterSpec("scenario_model_jobs", "Jobs run per model in the current period.",
                "models", ("model_id",), "jobs"),
    CounterSpec("scenario_assets_created", "Assets created per kind in the current period.",
                "assets", ("kind",), "assets"),
    CounterSpec("scenario_assets_created_by_api_key",
                "Assets created per kind through API keys in the current period.",
                "assets", ("kind",), "assets_api_key"),
    CounterSpec("scenario_nsfw_assets", "NSFW-flagged assets per label in the current period.",
                "nsfw", ("label",), "assets"),
    CounterSpec("scenario_nsfw_assets_by_api_key",
                "NSFW-flagged assets per label created through API keys in the current period.",
                "nsfw", ("label",), "assets_api_key"),
    CounterSpec("scenario_usage", "Usage per usage name in the current period, in its unit.",
                "usages", ("usage_name",), "value"),
    CounterSpec("scenario_usage_by_api_key",
                "Usage per usage name through API keys in the current period.",
                "usages", ("usage_name",), "api_key"),
    CounterSpec("scenario_usage_cost_creative_units",
                "Creative Units spent per usage name (kind of work) in the current period; "
                "0 while the period's sum is a credit.", "usages", ("usage_name",), "cost",
                priced=True),
    CounterSpec("scenario_usage_credit_creative_units",
                "Creative Units credited per usage name in the current period (a refund: the "
                "magnitude of a negative sum of costs).", "usages", ("usage_name",), "credit",
                priced=True),
    CounterSpec("scenario_usage_cost_by_api_key_creative_units",
                "Creative Units spent per usage name through API keys in the current period.",
                "usages", ("usage_name",), "cost_api_key", priced=True),
    CounterSpec("scenario_usage_credit_by_api_key_creative_units",
                "Creative Units credited per usage name on API-key usage in the current "
                "period.", "usages", ("usage_name",), "credit_api_key", priced=True),
    CounterSpec("scenario_usage_discount_creative_units",
                "Creative Units discounted per usage name in the current period (magnitude).",
                "usages", ("usage_name",), "discount", priced=True),
    CounterSpec("scenario_usage_discount_by_api_key_creative_units",
                "Creative Units discounted per usage name on API-key usage in the current "
                "period (magnitude).", "usages", ("usage_name",), "discount_api_key",
                priced=True),
    CounterSpec("scenario_quality_gate_assets",
                "Assets scored by the Quality Gate per verdict in the current period (total "
                "counts every scored asset: never add it to the others).", "quality_gates",
                ("verdict",), "assets"),
    CounterSpec("scenario_quality_gate_assets_by_api_key",
                "Assets scored by the Quality Gate per verdict in the current period, created "
                "through API keys.", "quality_gates", ("verdict",), "assets_api_key"),
    CounterSpec("scenario_user_consumption_creative_units",
                "Creative Units consumed per user in the current period.", "users",
                ("user_id",), "consumption"),
    CounterSpec("scenario_user_discount_creative_units",
                "Creative Units discounted per user in the current period (magnitude).",
                "users", ("user_id",), "discount"),
    CounterSpec("scenario_user_consumption_by_action_creative_units",
                "Creative Units consumed per user and billing action in the current period.",
                "user_actions", ("user_id", "action")),
)
