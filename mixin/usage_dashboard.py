"""The "Scenario usage" dashboard: Creative Unit spend against the budget, where it
goes (models, channels, users), and what it produces."""

from __future__ import annotations

from typing import Any

from mixin import promql
from mixin.config import PERIOD_START, MixinConfig, in_words
from mixin.dashboard import dashboard
from mixin.panel_queries import PanelQueries
from mixin.panels import (
    CU,
    CU_PER_HOUR,
    DASHED,
    DATASOURCE,
    DOTTED,
    Panel,
    Row,
    bar_chart,
    by_ref,
    fixed_color,
    gauge,
    reduce_options,
    stat,
    table,
    targets,
    thresholds,
    timeseries,
)
from mixin.plan_panels import money_panels, plan_and_caps
from mixin.recording_rules import (
    API_COST,
    COST,
    DISCOUNT,
    EFFECTIVE_BUDGET,
    PROJECTED,
    PTD_API_COST,
    PTD_COST,
    PTD_DISCOUNT,
    PTD_MODEL_COST,
    PTD_USAGE_NET,
    PTD_USER,
    PTD_USER_ACTION,
    PTD_USER_DISCOUNT,
    USAGE_COST,
    USAGE_CREDIT,
    USER_ACTIONS,
    USER_CONSUMPTION,
    cost_rate,
)

QUALITY_GATE = "scenario_quality_gate_assets_total"


def usage_dashboard(cfg: MixinConfig) -> dict[str, Any]:
    """The usage dashboard's JSON."""
    q = PanelQueries(cfg)
    top_n = cfg.top_models
    rate1h, rate1h_model = cost_rate(cfg.short_window), cost_rate(cfg.short_window, per_model=True)
    ptd = q.sel(PTD_COST)
    budget = q.sel(EFFECTIVE_BUDGET)
    period_start = q.latest(PERIOD_START)
    period_end = q.latest("scenario_period_end_timestamp_seconds")
    on = f"on ({q.keys})"
    budget_used = f"100 * {ptd}\n/ {on}\n{budget}"
    even_pace = (f"{budget}\n* {on} (time() - {period_start})\n"
                 f"/ {on} ({period_end} - {on} {period_start})")
    web_app_ptd = f"{ptd}\n- {on}\n{q.sel(PTD_API_COST)}"
    jobs = "scenario_model_jobs_total"
    model_legend = f"{{{{model_name}}}} · {q.legend}"
    action_legend = f"{{{{usage_name}}}} · {q.legend}"
    net_action_rate = promql.per_hour(q.rate_difference(USAGE_COST, USAGE_CREDIT, "usage_name"))
    where = {"account": "Account", q.deployment: q.deployment.title()}
    users = {"user_name": "User", "user_id": "User id", "is_api_key": "API key", **where}
    items: list[Panel | Row] = [
        Row("This period"),
        stat("Spend this period",
             "Creative Units spent since the current billing period began, gross (before "
             "discounts): the figure Scenario bills. It is the raw value of the exporter's "
             "period counters, read by the recording rule "
             f"{PTD_COST}, and falls back to about 0 when a new period starts.",
             CU, ptd, q.legend),
        stat("Budget",
             "The Creative Unit budget of the period: the one configured in the exporter "
             "(--budget.creative-units, or budget_creative_units per account in the "
             "configuration file), else what the team can spend this billing period as "
             "Scenario reports it: the plan's allowance plus the prepaid units (once the "
             "allowance is used up, the CU used plus the prepaid units left; recording rule "
             f"{EFFECTIVE_BUDGET}). No data when neither is known.",
             CU, budget, q.legend, graph=False),
        gauge("Budget used",
              "Share of the period's budget spent so far (gross cost over budget). "
              "ScenarioBudgetExhausted fires at 100%.", budget_used, q.legend),
        stat("Budget left",
             "Budget minus the spend of this period. Negative (red) once the budget is "
             "exceeded.",
             CU, f"{budget}\n- {on}\n{ptd}", q.legend,
             steps=thresholds((None, "red"), (0, "green"))),
        stat("Projected spend at period end",
             "Spend this period plus the rate of the last 24 hours over the time left in "
             f"the period (recording rule {PROJECTED}). Compare with the budget; "
             "ScenarioBudgetForecastExceeded fires when it stays above for "
             f"{in_words(cfg.budget_forecast_for)}. Low "
             "during Prometheus' first day, which lacks a full day of history.",
             CU, q.sel(PROJECTED), q.legend, steps=thresholds((None, "blue"))),
        stat("Spend rate, last hour",
             "Creative Units per hour, averaged over the last hour, all models together "
             f"(recording rule {rate1h}).",
             CU_PER_HOUR, promql.per_hour(q.sel(rate1h)), q.legend),
        stat("Discounts this period",
             "Creative Units discounted since the period began, summed over models "
             f"(recording rule {PTD_DISCOUNT}). Shown as a positive amount.",
             CU, q.sel(PTD_DISCOUNT), q.legend, steps=thresholds((None, "purple"))),
        stat("Period ends in",
             "Time left until the current billing period ends and the counters start again "
             "from 0, as the exporter computes it for its --period and --period.anchor-day "
             "(scenario_period_end_timestamp_seconds).",
             "s", f"{period_end} - time()", q.legend, graph=False, decimals=None,
             steps=thresholds((None, "text"))),
        timeseries(
            "Spend this period vs budget",
            "Cumulative spend of the current period (it drops to 0 when a period starts), "
            "the budget, the even pace (where spend would be if the budget were spread "
            "evenly over the period) and the projected total at the end of the period.",
            CU,
            [(ptd, f"{q.legend}: spent"),
             (budget, f"{q.legend}: budget"),
             (even_pace, f"{q.legend}: even pace"),
             (q.sel(PROJECTED), f"{q.legend}: projected at period end")],
            rate=False, width=16, legend_calcs=("lastNotNull",),
            overrides=[by_ref("B", DASHED, fixed_color("red")),
                       by_ref("C", DOTTED, fixed_color("text")),
                       by_ref("D", DASHED, fixed_color("orange"))]),
        Panel("piechart", "Spend by channel this period",
              "Where this period's Creative Units went: through API keys (scripts, "
              "pipelines, integrations) or through Scenario's web app (the rest of the cost).",
              CU,
              targets((q.sel(PTD_API_COST), f"{q.legend}: API keys"),
                      (web_app_ptd, f"{q.legend}: web app")),
              8, 9,
              options={"reduceOptions": reduce_options(), "pieType": "donut",
                       "displayLabels": ["percent"],
                       "legend": {"showLegend": True, "displayMode": "table",
                                  "placement": "bottom", "values": ["value", "percent"]},
                       "tooltip": {"mode": "single", "sort": "none"}},
              defaults={"decimals": 0, "color": {"mode": "palette-classic"}}),
        *money_panels(cfg, q),

        *plan_and_caps(cfg, q),

        Row("Spend over time"),
        bar_chart(
            "Spend by period",
            "Creative Units spent in each of the last 12 billing periods, gross (the "
            "figure of \"Spend this period\"), and in the current one so far: one bar per "
            "period and account, labelled with the period's last day (today for the "
            "current one). Read from the recording rule "
            f"{PTD_COST} where Prometheus recorded it, else from the raw counters, which "
            "is what a backfill writes: each day's last value, on the day after which a "
            "new period starts. The last 12 months, in daily steps at 00:00 UTC, whatever "
            "the dashboard's range while that range is relative (now-7d, ...).",
            CU, [(q.period_totals(PTD_COST, COST), q.legend)],
            step="1d", time_from="now-12M", time_format="YYYY-MM-DD"),
        timeseries(
            f"Spend rate by model (top {top_n})",
            f"Creative Units per hour of the {top_n} models that cost the most over the "
            "selected time range, stacked, plus all other models together: the top of the "
            "stack is the account's total spend rate. Model names come from "
            "scenario_model_info.",
            CU_PER_HOUR,
            [(q.top_models_per_hour(COST), model_legend),
             (q.other_models(COST), f"other models · {q.legend}")],
            stacked=True, width=24, height=10),
        timeseries(
            f"Jobs by model (top {top_n})",
            f"Jobs per hour of the {top_n} models that ran the most jobs over the selected "
            "time range.",
            "suffix: jobs/h",
            [(q.top_models_per_hour(jobs), model_legend)],
            stacked=True),
        timeseries(
            f"Discounts by model (top {top_n})",
            f"Creative Units per hour discounted on the {top_n} models with the largest "
            "discounts over the selected time range (a positive amount).",
            CU_PER_HOUR,
            [(q.top_models_per_hour(DISCOUNT), model_legend)],
            stacked=True),
        timeseries(
            "Spend rate by channel",
            "Creative Units per hour through API keys and through the web app (total cost "
            "minus the API-key cost), stacked.",
            CU_PER_HOUR,
            [(promql.per_hour(q.rate_sum(API_COST)), f"{q.legend}: API keys"),
             (promql.per_hour(q.rate_difference(COST, API_COST)), f"{q.legend}: web app")],
            stacked=True),
        table(
            "Models this period",
            "Every model's spend since the period began (recording rule "
            f"{PTD_MODEL_COST}) and its spend rate over the last hour "
            f"({rate1h_model}), biggest first. The footer adds up the columns.",
            CU,
            [(q.with_model_names(q.sel(PTD_MODEL_COST)), "Spent this period", CU),
             (promql.per_hour(q.with_model_names(q.sel(rate1h_model))), "Last hour", CU_PER_HOUR)],
            renames={"model_name": "Model", "model_id": "Model id", **where},
            order=["Model", "Spent this period", "Last hour", "Account",
                   q.deployment.title(), "Model id"],
            width=12, height=9),

        Row("Spend by action"),
        timeseries(
            "Spend rate by action",
            "Net Creative Units per hour of each usage name (kind of work: "
            "images-generation, models-training, upscale, ...): its cost less its credits. "
            "Not stacked: a usage name credited more than it cost (refunds) has a negative "
            "net rate, drawn below 0, which a stack would not add to the others. Free "
            "actions stay at 0; only usage names that upstream prices in Creative Units "
            "appear.",
            CU_PER_HOUR,
            [(net_action_rate, action_legend)],
            width=24, height=10, minimum=None),
        timeseries(
            "Refunds and credits",
            "Creative Units per hour credited back, by usage name: a usage name whose "
            "costs add up to a negative sum over the period (refunds) is a credit, "
            "shown as a positive amount, stacked. Usage names credited nothing over the "
            "window are left out. The spend rate by action subtracts these.",
            CU_PER_HOUR,
            [(f"{promql.per_hour(q.rate_sum(USAGE_CREDIT, 'usage_name'))}\n> 0",
              action_legend)],
            stacked=True, bars=True),
        table(
            "Actions this period",
            "Net Creative Units of each usage name since the period began, cost less "
            f"credits (recording rule {PTD_USAGE_NET}; negative for refunds), and its "
            "current net rate. The footer adds up the columns.",
            CU,
            [(q.sel(PTD_USAGE_NET), "Net this period", CU),
             (net_action_rate, "Current rate", CU_PER_HOUR)],
            renames={"usage_name": "Action", **where},
            order=["Action", "Net this period", "Current rate", "Account",
                   q.deployment.title()],
            width=12, height=9),

        Row("Users"),
        table(
            "Users this period",
            "Creative Units consumed and discounted per user (people and API keys) since "
            f"the period began (recording rules {PTD_USER} and {PTD_USER_DISCOUNT}), and "
            "the current rate. User names and e-mails are personal data: they appear only "
            "when the exporter runs with --metrics.user-identity; otherwise, the user id.",
            CU,
            [(q.with_user_names(q.sel(PTD_USER)), "Consumed this period", CU),
             (q.with_user_names(q.sel(PTD_USER_DISCOUNT)), "Discounted this period", CU),
             (promql.per_hour(q.with_user_names(
                 q.rate_sum(USER_CONSUMPTION, "user_id"))),
              "Current rate", CU_PER_HOUR)],
            renames=users,
            order=["User", "Consumed this period", "Discounted this period", "Current rate",
                   "API key", "Account", q.deployment.title(), "User id"],
            height=10),
        table(
            "Users by action this period",
            "Creative Units consumed per user and billing action (generation, training, "
            "upscale, ...) since the period began (recording rule "
            f"{PTD_USER_ACTION}), and the current rate: what each user's consumption "
            "above went to, as upstream details it. Users and actions past the exporter's "
            "--limits.max-users are folded into user __other__.",
            CU,
            [(q.with_user_names(q.sel(PTD_USER_ACTION)), "Consumed this period", CU),
             (promql.per_hour(q.with_user_names(
                 q.rate_sum(USER_ACTIONS, "user_id", "action"))),
              "Current rate", CU_PER_HOUR)],
            renames={**users, "action": "Action"},
            order=["User", "Action", "Consumed this period", "Current rate", "API key",
                   "Account", q.deployment.title(), "User id"],
            height=10),

        Row("Assets and usage"),
        timeseries(
            "Assets created by kind",
            "Assets created per hour, by kind (image, video, 3d, audio, ...), stacked.",
            "suffix: assets/h",
            [(promql.per_hour(q.rate_sum("scenario_assets_created_total", "kind")),
              f"{{{{kind}}}} · {q.legend}")],
            stacked=True),
        timeseries(
            "NSFW-flagged assets by label",
            "Assets per hour that Scenario's NSFW detection flagged, by label. "
            "ScenarioNSFWAssetsFlagged (info) fires when new ones appear.",
            "suffix: assets/h",
            [(promql.per_hour(q.rate_sum("scenario_nsfw_assets_total", "label")),
              f"{{{{label}}}} · {q.legend}")],
            stacked=True, bars=True),
        timeseries(
            "Quality Gate verdicts",
            "Assets per hour scored by Scenario's Quality Gate, by verdict (pass, warn, "
            "fail), stacked: the top of the stack is every scored asset (upstream's "
            "verdict total, left out so as not to count them twice).",
            "suffix: assets/h",
            [(promql.per_hour(q.rate_sum(QUALITY_GATE, "verdict", only=('verdict!="total"',))),
              f"{{{{verdict}}}} · {q.legend}")],
            stacked=True),
        timeseries(
            "Quality Gate fail ratio",
            "Assets with the verdict fail, as a percentage of every asset the Quality Gate "
            "scored (upstream's verdict total), over the rate window. No data where no "
            "asset was scored in the window, rather than a division by 0.",
            "percent",
            [(promql.percent_of(q.rate_sum(QUALITY_GATE, only=('verdict="fail"',)),
                                q.rate_sum(QUALITY_GATE, only=('verdict="total"',)), q.by()),
              q.legend)]),
        timeseries(
            "Usage by usage name",
            "Every usage counter of Scenario's usage API, per hour, by usage_name "
            "(images-generation, upscale, models-training, ...). Each is in its own unit, "
            "so they are not stacked.",
            "suffix: /h",
            [(promql.per_hour(q.rate_sum("scenario_usage_total", "usage_name")),
              f"{{{{usage_name}}}} · {q.legend}")],
            width=24, height=10),
    ]
    new_period = {
        "name": "Period start", "enable": True, "hide": False, "iconColor": "blue",
        "datasource": DATASOURCE,
        "expr": f"{promql.aggregate_by('max', q.by(), f'changes({q.window(PERIOD_START)})')} > 0",
        "step": cfg.min_interval, "titleFormat": "New billing period",
        "textFormat": q.legend, "tagKeys": q.keys.replace(" ", ""), "useValueForTime": False,
    }
    return dashboard(
        cfg, q, "scenario-usage", "Scenario usage",
        "Creative Unit spend of Scenario accounts: this period against the budget (and "
        "in money, with a price), the team's plan, prepaid units and caps, where it goes "
        "(models, channels, users), what it produces. From scenario-exporter; needs its "
        "recording rules.",
        items, extra_tags=["finops"], timezone="utc", annotations=[new_period])

