"""The usage dashboard's money panels and its row "Plan and caps": what the team's plan
allows, what is left of it and of the prepaid units, and the caps of API keys, members
and projects, as Scenario's team endpoints report them."""

from __future__ import annotations

from mixin import promql
from mixin.config import BILLING_END, CAPPED, CappedConsumption, MixinConfig, in_words
from mixin.panel_queries import PanelQueries
from mixin.panels import (
    CU,
    DASHED,
    Panel,
    Row,
    by_ref,
    fixed_color,
    gauge,
    stat,
    table,
    thresholds,
    timeseries,
)
from mixin.recording_rules import (
    ALLOWANCE,
    AVAILABLE,
    MONEY_PROJECTED,
    MONEY_PTD,
    MONEY_RATE1H,
    PLAN_USED,
    PREPAID,
    cost_rate,
    projected_consumption,
)

MONEY = "none"
TEAM_INFO = "scenario_team_info"
TEAM_LABELS = ("team_name", "team_id", "plan", "payment_status", "subscription_status")
KEY_LABELS = ("api_key_name", "status", "scope", "member_id")
NO_PRICE = ("No data when the exporter has no price (--price.per-creative-unit, or "
            "price_per_creative_unit per account).")


def money_panels(cfg: MixinConfig, q: PanelQueries) -> list[Panel | Row]:
    """Money beside CU, from the money recording rules: only where a price is set."""
    legend = f"{{{{currency}}}} · {q.legend}"
    return [
        stat("Spend this period in money",
             "This period's spend in money, each Creative Unit at the price in force when "
             f"it was spent (recording rule {MONEY_PTD}): a new price applies to what is "
             f"spent from then on, never to the past. {NO_PRICE}",
             MONEY, q.sel(MONEY_PTD), legend, decimals=2, width=4, height=6),
        stat("Projected in money at period end",
             "The money spent this period plus the rate of the last 24 hours, at today's "
             f"price, over the time left in the period (recording rule {MONEY_PROJECTED}). "
             f"{NO_PRICE}",
             MONEY, q.sel(MONEY_PROJECTED), legend, decimals=2,
             steps=thresholds((None, "blue")), width=4, height=6),
        stat("Spend rate in money, last hour",
             "Money per hour, averaged over the last hour, at the price of each moment "
             f"(recording rule {MONEY_RATE1H}, times 3600). {NO_PRICE}",
             MONEY, promql.per_hour(q.sel(MONEY_RATE1H)), legend, decimals=2, width=4, height=6),
        timeseries(
            "Spend in money this period",
            "The money spent this period (it drops to 0 when a period starts) and the "
            f"projection at the end of the period, in the price's currency. {NO_PRICE}",
            MONEY,
            [(q.sel(MONEY_PTD), f"{legend}: spent"),
             (q.sel(MONEY_PROJECTED), f"{legend}: projected at period end")],
            rate=False, width=12, height=6, legend_calcs=("lastNotNull",),
            overrides=[by_ref("B", DASHED, fixed_color("orange"))]),
    ]


def _latest(q: PanelQueries, metric: str, *by: str) -> str:
    """A gauge that every replica serves alike, once per deployment, account and *by*."""
    return promql.aggregate_by("max", q.by(*by), q.sel(metric))


def _cap_table(q: PanelQueries, capped: CappedConsumption, title: str, description: str,
               width: int) -> Panel:
    """A table of *capped*'s consumption, cap, share of the cap and projection, named."""
    ids = capped.id_label
    where = {"account": "Account", q.deployment: q.deployment.title()}
    if capped.kind == "member":
        renames = {"user_name": "Member", "user_id": "Member id", "is_api_key": "API key",
                   **where}

        def named(expr: str) -> str:
            return q.with_user_names(expr)
        first = ["Member"]
        rest = ["Account", q.deployment.title(), "Member id"]
    elif capped.kind == "api_key":
        renames = {"api_key_name": "API key", "api_key_id": "Key id", "status": "Status",
                   "scope": "Scope", "member_id": "Member id", **where}

        def named(expr: str) -> str:
            return promql.with_names(expr, q.by(ids), q.sel("scenario_api_key_info"),
                                     KEY_LABELS, expr)
        first = ["API key"]
        rest = ["Status", "Scope", "Account", q.deployment.title(), "Key id", "Member id"]
    else:
        renames = {"project_name": "Project", "project_id": "Project id", **where}

        def named(expr: str) -> str:
            return promql.with_names(expr, q.by(ids), q.sel("scenario_project_info"),
                                     ("project_name",), expr)
        first = ["Project"]
        rest = ["Account", q.deployment.title(), "Project id"]
    used, cap = _latest(q, capped.consumption, ids), _latest(q, capped.cap, ids)
    columns = [(named(used), "Consumed this period", CU),
               (named(cap), "Cap", CU),
               (named(promql.percent_of(used, cap, q.by(ids))), "Share of cap", "percent"),
               (named(q.sel(projected_consumption(capped))), "Projected at period end", CU)]
    return table(title, description, CU, columns, renames=renames,
                 order=[*first, *(c[1] for c in columns), *rest], width=width, height=9)


def plan_and_caps(cfg: MixinConfig, q: PanelQueries) -> list[Panel | Row]:
    """The row "Plan and caps"."""
    on = f"on ({q.keys})"
    allowance, used = _latest(q, ALLOWANCE), _latest(q, PLAN_USED)
    expiry = _latest(q, "scenario_prepaid_next_expiry_timestamp_seconds")
    days_left = (f"{q.sel(AVAILABLE)}\n/ {on}\n({q.sel(cost_rate(cfg.long_window))} > 0)"
                 "\n/ 86400")
    billing_end = f"{_latest(q, BILLING_END)} - time()"
    team = promql.with_names(billing_end, q.by(), q.sel(TEAM_INFO), TEAM_LABELS, billing_end)
    tables = {capped.kind: capped for capped in CAPPED}
    cap_share = f"{cfg.cap_used_ratio * 100:g}%"
    return [
        Row("Plan and caps"),
        stat("Allowance",
             "The Creative Units of the team's plan for the billing period, as Scenario "
             "reports them (scenario_plan_creative_units).",
             CU, allowance, q.legend, graph=False),
        stat("Allowance used",
             "Creative Units used so far in the billing period, as Scenario counts them "
             "(scenario_plan_used_creative_units): the figure of the invoice.",
             CU, used, q.legend),
        gauge("Share of allowance used",
              "Creative Units used so far as a share of the plan's allowance. Past 100%, "
              "prepaid units pay for the rest.",
              promql.percent_of(used, allowance, q.by()), q.legend),
        stat("Prepaid units left",
             "Creative Units left in prepaid packs not yet expired "
             "(scenario_prepaid_creative_units).",
             CU, _latest(q, PREPAID), q.legend),
        stat("Next prepaid expiry in",
             "Time until the earliest expiry among prepaid packs with units left "
             "(scenario_prepaid_next_expiry_timestamp_seconds); what is left of that pack "
             "then is lost. ScenarioPrepaidUnitsExpiring fires within "
             f"{in_words(cfg.prepaid_expiry_within)}.",
             "s", f"{expiry} - time()", q.legend, graph=False, decimals=None,
             steps=thresholds((None, "orange"), (7 * 86400, "text"))),
        stat("Expiring next",
             "Prepaid Creative Units left in the pack(s) that expire next "
             "(scenario_prepaid_expiring_next_creative_units).",
             CU, _latest(q, "scenario_prepaid_expiring_next_creative_units"), q.legend,
             graph=False, steps=thresholds((None, "orange"))),
        stat("Creative Units available",
             "What the team can still spend this billing period: what is left of the "
             f"allowance plus the prepaid units left (recording rule {AVAILABLE}).",
             CU, q.sel(AVAILABLE), q.legend),
        stat("Days left at the current pace",
             "How long the Creative Units available last at the spend rate of the last 24 "
             f"hours (recording rule {cost_rate(cfg.long_window)}); no data while nothing "
             "is spent. Fewer days than are left in the billing period: the team runs out "
             "before it ends "
             "(ScenarioCreativeUnitsRunningOut, or ScenarioBudgetForecastExceeded without "
             "a configured budget).",
             "suffix: days", days_left, q.legend, decimals=1,
             steps=thresholds((None, "red"), (7, "orange"), (14, "green"))),
        table("Team and billing period",
              "The team each account reads, its plan, payment and subscription status "
              "(scenario_team_info; ScenarioPaymentOrSubscriptionIssue fires on a failed "
              "payment or a subscription that is not active), and the time left in the "
              "billing period as Scenario reports it "
              "(scenario_billing_period_end_timestamp_seconds).",
              "s",
              [(team, "Billing period ends in", "s")],
              renames={"team_name": "Team", "team_id": "Team id", "plan": "Plan",
                       "payment_status": "Payment", "subscription_status": "Subscription",
                       "account": "Account", q.deployment: q.deployment.title()},
              order=["Team", "Plan", "Payment", "Subscription", "Billing period ends in",
                     "Account", q.deployment.title(), "Team id"],
              height=5),
        _cap_table(q, tables["api_key"], "API keys this billing period",
                   "Creative Units each API key used this billing period, its cap, the share "
                   "of the cap used and its projection at the end of the period (its pace of "
                   "the last 24 hours), with the key's name, status and scope from "
                   f"scenario_api_key_info. ScenarioCapNearlyReached fires from {cap_share} "
                   "of a cap, ScenarioCapForecastExceeded when the projection crosses it.",
                   24),
        _cap_table(q, tables["member"], "Members this billing period",
                   "Creative Units each team member used this billing period, their "
                   "effective cap, the share used and the projection at the end of the "
                   "period. Names only with --metrics.user-identity (personal data); "
                   "otherwise the member id (the user_id of the usage figures).",
                   12),
        _cap_table(q, tables["project"], "Projects this billing period",
                   "Creative Units each project used this billing period (the chargeback "
                   "per project), its cap where it has one, the share used and the "
                   "projection at the end of the period; names from scenario_project_info.",
                   12),
    ]
