"""The business families: account views in, metric families out. Pure: no I/O, no state.

Each business counter is the period-to-date sum of upstream points, so its
``_created`` is the period start; it resets when a new period begins.

    scenario_model_cost_creative_units_total{account="default",model_id="model_abc"} 210.5
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from exporter.core.period import PeriodKind, next_period_start
from exporter.core.values import AccountView, Totals, UsageSnapshot


@dataclass(frozen=True)
class CollectorOptions:
    """The settings that shape the exposition."""

    max_stale: float = 7200.0
    user_identity: bool = False
    period: PeriodKind = "month"


@dataclass(frozen=True)
class _CounterSpec:
    name: str
    documentation: str
    section: str
    label: str
    field: str


# name (without _total), help, snapshot section, id label, field of the totals
COUNTERS: tuple[_CounterSpec, ...] = (
    _CounterSpec("scenario_model_cost_creative_units",
                 "Creative Units spent per model in the current period.", "models", "model_id",
                 "cost"),
    _CounterSpec("scenario_model_cost_by_api_key_creative_units",
                 "Creative Units spent per model through API keys in the current period.",
                 "models", "model_id", "cost_api_key"),
    _CounterSpec("scenario_model_discount_creative_units",
                 "Creative Units discounted per model in the current period (magnitude).",
                 "models", "model_id", "discount"),
    _CounterSpec("scenario_model_discount_by_api_key_creative_units",
                 "Creative Units discounted per model on API-key usage in the current period "
                 "(magnitude).", "models", "model_id", "discount_api_key"),
    _CounterSpec("scenario_model_jobs", "Jobs run per model in the current period.",
                 "models", "model_id", "jobs"),
    _CounterSpec("scenario_assets_created", "Assets created per kind in the current period.",
                 "assets", "kind", "assets"),
    _CounterSpec("scenario_assets_created_by_api_key",
                 "Assets created per kind through API keys in the current period.",
                 "assets", "kind", "assets_api_key"),
    _CounterSpec("scenario_nsfw_assets", "NSFW-flagged assets per label in the current period.",
                 "nsfw", "label", "assets"),
    _CounterSpec("scenario_nsfw_assets_by_api_key",
                 "NSFW-flagged assets per label created through API keys in the current period.",
                 "nsfw", "label", "assets_api_key"),
    _CounterSpec("scenario_usage", "Usage per usage name in the current period, in its unit.",
                 "usages", "usage_name", "value"),
    _CounterSpec("scenario_usage_by_api_key",
                 "Usage per usage name through API keys in the current period.",
                 "usages", "usage_name", "api_key"),
    _CounterSpec("scenario_user_consumption_creative_units",
                 "Creative Units consumed per user in the current period.", "users", "user_id",
                 "consumption"),
    _CounterSpec("scenario_user_discount_creative_units",
                 "Creative Units discounted per user in the current period (magnitude).",
                 "users", "user_id", "discount"),
)


def is_withdrawn(view: AccountView, now: float, max_stale: float) -> bool:
    """True when the account's business series must not be served (none, or too old)."""
    if view.snapshot is None:
        return True
    return now - view.snapshot.window.end.timestamp() > max_stale


def business_families(views: Sequence[AccountView], now: float, options: CollectorOptions,
                      with_created: bool = True) -> Iterator[Metric]:
    """Every business family of *views* at wall-clock time *now*, and ``scenario_up``.

    *with_created* adds each counter's ``_created`` (the period start). It is
    meant for OpenMetrics; in the Prometheus text format ``_created`` would be
    one more gauge series per counter, doubling the series count.
    """
    served = [(v, v.snapshot) for v in views
              if v.snapshot is not None and not is_withdrawn(v, now, options.max_stale)]

    up = GaugeMetricFamily("scenario_up", "1 if the latest upstream refresh succeeded, else 0.",
                           labels=["account"])
    as_of = GaugeMetricFamily("scenario_data_as_of_timestamp_seconds",
                              "End of the upstream window whose data is being served.",
                              labels=["account"])
    start = GaugeMetricFamily("scenario_period_start_timestamp_seconds",
                              "Start of the current billing period.", labels=["account"])
    # Rules and panels count down to it and project spend to it, whatever the period.
    end = GaugeMetricFamily("scenario_period_end_timestamp_seconds",
                            "End of the current billing period (start of the next one).",
                            labels=["account"])
    budget = GaugeMetricFamily("scenario_budget_creative_units",
                               "Configured Creative Unit budget of the period.",
                               labels=["account"])
    for view in views:
        name = view.account.name
        up.add_metric([name], 1.0 if view.up else 0.0)
        if view.snapshot is not None:
            as_of.add_metric([name], view.snapshot.window.end.timestamp())
            start.add_metric([name], view.snapshot.window.start.timestamp())
            end.add_metric([name], next_period_start(view.snapshot.window.start,
                                                     options.period).timestamp())
        if view.account.budget_creative_units is not None:
            budget.add_metric([name], view.account.budget_creative_units)
    yield from (up, as_of, start, end, budget)

    for spec in COUNTERS:
        family = CounterMetricFamily(spec.name, spec.documentation,
                                     labels=["account", spec.label])
        for view, snapshot in served:
            _add_counter_samples(family, view.account.name, snapshot, spec, with_created)
        yield family

    model_info = InfoMetricFamily("scenario_model", "Human names of models (join on model_id).",
                                  labels=["account", "model_id"])
    user_info = InfoMetricFamily("scenario_user", "What is known of users (join on user_id).",
                                 labels=["account", "user_id"])
    for view, snapshot in served:
        name = view.account.name
        for model_id, model_name in sorted(snapshot.model_names.items()):
            model_info.add_metric([name, model_id], {"model_name": model_name})
        for user_id, identity in sorted(snapshot.user_identities.items()):
            labels = {"is_api_key": _bool_label(identity.is_api_key)}
            if options.user_identity:
                labels["user_name"] = identity.name or ""
                labels["email"] = identity.email or ""
            user_info.add_metric([name, user_id], labels)
    yield model_info
    yield user_info


def _add_counter_samples(family: CounterMetricFamily, account: str, snapshot: UsageSnapshot,
                         spec: _CounterSpec, with_created: bool) -> None:
    totals: Mapping[str, Totals] = getattr(snapshot, spec.section)
    created = snapshot.window.start.timestamp() if with_created else None
    for key in sorted(totals):
        # Counters are never negative, whatever upstream sends (a negative cost).
        value = getattr(totals[key], spec.field)
        family.add_metric([account, key], max(value, 0.0), created=created)


def _bool_label(value: bool | None) -> str:
    if value is None:
        return "unknown"
    return "true" if value else "false"
