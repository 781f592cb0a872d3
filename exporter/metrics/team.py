"""The team families: the plan, prepaid units and caps of each account, and which
upstream endpoints answer. Pure: views in, families out.

These are upstream's own period figures, so they are gauges. A figure upstream
left out is not served; an endpoint's figures are served while its last good
answer is younger than the staleness bound.

    scenario_plan_creative_units{account="default"} 250000
    scenario_exporter_endpoint_up{account="default",endpoint="team_limits"} 1
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from exporter.core.team import USAGES, TeamView, prepaid_at
from exporter.core.values import AccountView


def _gauge(name: str, help_text: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, labels=["account", *labels])


def _fresh(at: float | None, now: float, max_stale: float) -> bool:
    return at is not None and now - at <= max_stale


def team_families(teams: Sequence[TeamView], now: float, max_stale: float) -> Iterator[Metric]:
    """Every team family of *teams* at wall-clock time *now*."""
    info = InfoMetricFamily("scenario_team",
                            "The account's team, plan, payment and subscription status.",
                            labels=["account"])
    start = _gauge("scenario_billing_period_start_timestamp_seconds",
                   "Start of the team's billing period, as upstream reports it.")
    end = _gauge("scenario_billing_period_end_timestamp_seconds",
                 "End of the team's billing period, as upstream reports it.")
    plan = _gauge("scenario_plan_creative_units",
                  "The plan's Creative Unit allowance for the billing period.")
    used = _gauge("scenario_plan_used_creative_units",
                  "Creative Units used so far in the billing period, as upstream counts them.")
    prepaid = _gauge("scenario_prepaid_creative_units",
                     "Prepaid Creative Units left in packs not yet expired.")
    expiry = _gauge("scenario_prepaid_next_expiry_timestamp_seconds",
                    "The earliest expiry among prepaid packs with units left.")
    expiring = _gauge("scenario_prepaid_expiring_next_creative_units",
                      "Prepaid Creative Units left in the pack(s) that expire next.")
    key_used = _gauge("scenario_api_key_consumption_creative_units",
                      "Creative Units used by an API key this billing period.", "api_key_id")
    key_cap = _gauge("scenario_api_key_max_consumption_creative_units",
                     "An API key's Creative Unit cap for the billing period.", "api_key_id")
    key_seen = _gauge("scenario_api_key_last_used_timestamp_seconds",
                      "When an API key last authenticated a request.", "api_key_id")
    key_info = InfoMetricFamily("scenario_api_key", "An API key's name, status and scope; "
                                "member_id is the user_id that usages report for it.",
                                labels=["account", "api_key_id"])
    member_used = _gauge("scenario_member_consumption_creative_units",
                         "Creative Units used by a team member this billing period.", "user_id")
    member_cap = _gauge("scenario_member_max_consumption_creative_units",
                        "A team member's effective Creative Unit cap.", "user_id")
    project_used = _gauge("scenario_project_consumption_creative_units",
                          "Creative Units used by a project this billing period.", "project_id")
    project_cap = _gauge("scenario_project_max_consumption_creative_units",
                         "A project's Creative Unit cap for the billing period.", "project_id")
    project_info = InfoMetricFamily("scenario_project", "A project's name.",
                                    labels=["account", "project_id"])

    def put(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
        if value is not None:
            family.add_metric(labels, value)

    for team in teams:
        account = team.account
        limits = team.limits if _fresh(team.limits_at, now, max_stale) else None
        details = team.details if _fresh(team.details_at, now, max_stale) else None
        if details is not None:
            info.add_metric([account], {
                "team_id": details.team_id, "team_name": details.name,
                "plan": details.plan or (limits.plan if limits and limits.plan else ""),
                "payment_status": details.payment_status,
                "subscription_status": details.subscription_status})
            for key_id, key in details.keys.items():
                put(key_used, [account, key_id], key.consumption)
                put(key_cap, [account, key_id], key.max_consumption)
                put(key_seen, [account, key_id], key.last_used)
                key_info.add_metric([account, key_id], {
                    "member_id": key.member_id, "api_key_name": key.name,
                    "status": key.status, "scope": key.scope})
            for user_id, member in details.members.items():
                put(member_used, [account, user_id], member.consumption)
                put(member_cap, [account, user_id], member.max_consumption)
        if limits is not None:
            put(start, [account], limits.period_start)
            put(end, [account], limits.period_end)
            put(plan, [account], limits.allowance)
            put(used, [account], limits.used)
            left = prepaid_at(limits.packs, now)
            prepaid.add_metric([account], left.remaining)
            put(expiry, [account], left.next_expiry)
            put(expiring, [account], left.expiring_next)
        if team.projects is not None and _fresh(team.projects_at, now, max_stale):
            for project_id, project in team.projects.items():
                put(project_used, [account, project_id], project.consumption)
                put(project_cap, [account, project_id], project.max_consumption)
                project_info.add_metric([account, project_id], {"project_name": project.name})
    yield from (info, start, end, plan, used, prepaid, expiry, expiring, key_used, key_cap,
                key_seen, key_info, member_used, member_cap, project_used, project_cap,
                project_info)


def endpoint_up_family(views: Sequence[AccountView], teams: Sequence[TeamView],
                       ) -> GaugeMetricFamily:
    """``scenario_exporter_endpoint_up{account, endpoint}``: 1 if the last call of that
    endpoint succeeded, 0 if it failed; an endpoint not called yet has no series."""
    family = GaugeMetricFamily(
        "scenario_exporter_endpoint_up",
        "1 if the last call of an upstream endpoint succeeded, 0 if it failed.",
        labels=["account", "endpoint"])
    for view in views:
        if view.attempted:
            family.add_metric([view.account.name, USAGES], 1.0 if view.up else 0.0)
    for team in teams:
        for endpoint, up in team.endpoints.items():
            family.add_metric([team.account, endpoint], 1.0 if up else 0.0)
    return family
