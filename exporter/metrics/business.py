"""The business families: account views in, metric families out. Pure: no I/O, no state.

Each business counter is the period-to-date sum of upstream points, so its
``_created`` is the period start; it resets when a new period begins.

    scenario_model_cost_creative_units_total{account="default",model_id="model_abc"} 210.5
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from exporter.core.account import DEFAULT_CURRENCY
from exporter.core.billing import PeriodChoice
from exporter.core.period import next_period_start
from exporter.core.values import AccountView
from exporter.metrics.counters import COUNTERS


@dataclass(frozen=True)
class CollectorOptions:
    """The settings that shape the exposition."""

    max_stale: float = 7200.0
    user_identity: bool = False
    period: PeriodChoice = "month"
    # The team figures are served while their last good answer is this young.
    team_max_stale: float = 7200.0


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
    price = GaugeMetricFamily("scenario_creative_unit_price",
                              "Contract price of one Creative Unit, as configured.",
                              labels=["account", "currency"])
    for view in views:
        name = view.account.name
        up.add_metric([name], 1.0 if view.up else 0.0)
        if view.snapshot is not None:
            as_of.add_metric([name], view.snapshot.window.end.timestamp())
            start.add_metric([name], view.snapshot.window.start.timestamp())
            end.add_metric([name], view.period_end if view.period_end is not None else
                           next_period_start(view.snapshot.window.start,
                                             "day" if options.period == "day" else "month",
                                             ).timestamp())
        if view.account.budget_creative_units is not None:
            budget.add_metric([name], view.account.budget_creative_units)
        if view.account.price_per_creative_unit is not None:
            price.add_metric([name, view.account.price_currency or DEFAULT_CURRENCY],
                             view.account.price_per_creative_unit)
    yield from (up, as_of, start, end, budget, price)

    for spec in COUNTERS:
        family = CounterMetricFamily(spec.name, spec.documentation,
                                     labels=["account", *spec.labels])
        for view, snapshot in served:
            created = snapshot.window.start.timestamp() if with_created else None
            for ids, value in spec.values(snapshot):
                # Counters are never negative (nor -0), whatever upstream sends.
                family.add_metric([view.account.name, *ids], value if value > 0 else 0.0,
                                  created=created)
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


def _bool_label(value: bool | None) -> str:
    if value is None:
        return "unknown"
    return "true" if value else "false"
