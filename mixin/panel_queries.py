"""The PromQL of the dashboards: the idioms of mixin.promql, applied to the series
that the dashboard's variables select.

Every query selects ``<deployment>=~"$<deployment>"`` and ``account=~"$account"``
and keeps both labels, so that two deployments (staging and production, two
clusters behind one Thanos) never add up. Period counters are rated per series,
deduplicated across replicas, then summed: a second replica changes no figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mixin import promql
from mixin.config import PERIOD_START, MixinConfig


@dataclass(frozen=True)
class PanelQueries:
    """Queries over the series selected by the deployment and account variables."""

    cfg: MixinConfig

    @property
    def deployment(self) -> str:
        """The label (and variable) that tells deployments apart."""
        return self.cfg.deployment_label

    def by(self, *extra: str) -> tuple[str, ...]:
        """The labels every figure is kept apart by (deployment, account), and *extra*."""
        return (self.deployment, "account", *extra)

    @property
    def keys(self) -> str:
        """``job, account``, as a grouping clause lists them."""
        return promql.label_list(self.by())

    @property
    def legend(self) -> str:
        """``{{account}} ({{job}})``: the legend of a figure per deployment and account."""
        return f"{{{{account}}}} ({{{{{self.deployment}}}}})"

    def matchers(self, *, account: bool = True) -> tuple[str, ...]:
        """The variables' matchers; series without an account label take only the first."""
        own = (f'{self.deployment}=~"${self.deployment}"',)
        return (*own, 'account=~"$account"') if account else own

    def sel(self, metric: str, *matchers: str, account: bool = True) -> str:
        """``metric{job=~"$job", account=~"$account", ...}``."""
        return promql.selector(metric, (*self.matchers(account=account), *matchers))

    def latest(self, metric: str) -> str:
        """A gauge that every replica serves alike, once per deployment and account."""
        return promql.aggregate_by("max", self.by(), self.sel(metric))

    def window(self, metric: str) -> str:
        """*metric*'s selector over Grafana's rate window."""
        return f"{self.sel(metric)}[{self.cfg.dashboard_window.range}]"

    def rate_sum(self, counter: str, *by: str, only: Sequence[str] = ()) -> str:
        """Per-second rate of business *counter* (see promql.period_change), deduplicated
        across replicas, summed by deployment, account and *by*; *only* selects some of
        its series (``verdict="fail"``)."""
        return promql.aggregate_by("sum", self.by(*by),
                                   self.deduplicated_rate(counter, only=only))

    def rate_difference(self, counter: str, less: str, *by: str) -> str:
        """The per-second rate of business *counter* less that of *less*, by deployment,
        account and *by* (a series of *counter* without one of *less* has none)."""
        return (f"{self.rate_sum(counter, *by)}\n- on ({promql.label_list(self.by(*by))})\n"
                f"{self.rate_sum(less, *by)}")

    def deduplicated_rate(self, counter: str, *, only: Sequence[str] = ()) -> str:
        """Per-second rate of each series of business *counter*, once across replicas."""
        return promql.dedup(self.cfg, promql.period_change(
            self.cfg, counter, self.cfg.dashboard_window, self.matchers(), only=only))

    def period_totals(self, recorded: str, counter: str) -> str:
        """The total of each period of business *counter*, summed over its ids, and the
        current period's so far (promql.period_totals), by deployment and account:
        its recorded period-to-date sum *recorded* where the rules have recorded it,
        else the raw counter, deduplicated across replicas, then summed.

        The recorded sum first: it is the sum of the series present at each
        evaluation, while each raw series' last value of the day may be older than
        the day's last moment (a model that spent nothing yet in a new period is no
        longer served, and its last value of the old period would count again). A
        backfill writes raw series only, each at the same moments, the period's
        last sample included."""
        from_rules = promql.aggregate_by("sum", self.by(), promql.day_last(self.sel(recorded)),
                                         block=True)
        raw = promql.aggregate_by("sum", self.by(), promql.dedup(
            self.cfg, promql.day_last(self.sel(counter)), block=True))
        return promql.period_totals(f"{from_rules}\nor\n{raw}", self.sel(PERIOD_START),
                                    self.by())

    def process_rate_sum(self, metric: str, *by: str) -> str:
        """Per-second rate of one of the exporter's own counters, summed over replicas:
        each replica calls upstream on its own, so their calls add up."""
        return promql.aggregate_by("sum", self.by(*by), f"rate({self.window(metric)})")

    def ranking(self, counter: str) -> str:
        """The top models of *counter* over the dashboard's range."""
        return promql.ranking(self.cfg.top_models, self.sel(counter), self.by("model_id"),
                              "$__range")

    def top_models_per_hour(self, counter: str) -> str:
        """The per-hour rate of business *counter* of each of its top models, named."""
        rates = promql.per_hour(self.rate_sum(counter, "model_id"))
        return self.with_model_names(promql.among(rates, self.by("model_id"),
                                                  self.ranking(counter)))

    def other_models(self, counter: str) -> str:
        """The rate of every model outside the top ones, so that a stacked graph adds up
        to the total."""
        outside = (f"{self.deduplicated_rate(counter)}\n"
                   f"unless on ({promql.label_list(self.by('model_id'))})\n"
                   f"{self.ranking(counter)}")
        return promql.per_hour(promql.aggregate_by("sum", self.by(), outside))

    def with_model_names(self, expr: str) -> str:
        """*expr* (by deployment, account, model_id) with ``model_name`` from
        scenario_model_info, or its id as name."""
        return promql.named_or_id(expr, self.by("model_id"), self.sel("scenario_model_info"),
                                  "model_name", "model_id", "all other models (folded)")

    def with_user_names(self, expr: str) -> str:
        """*expr* (by deployment, account, user_id) with ``is_api_key`` and, when the
        exporter runs with --metrics.user-identity, ``user_name`` from scenario_user_info;
        a user without an info series stays, unnamed."""
        return promql.with_names(expr, self.by("user_id"), self.sel("scenario_user_info"),
                                 ("user_name", "is_api_key"), expr)
