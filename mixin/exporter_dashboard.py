"""The "Scenario exporter" dashboard: the exporter's health, its calls to Scenario's
API, data freshness and cardinality caps."""

from __future__ import annotations

from typing import Any

from mixin import promql
from mixin.config import MixinConfig, in_words, seconds
from mixin.dashboard import dashboard
from mixin.panel_queries import PanelQueries
from mixin.panels import Panel, Row, gauge, stat, target, thresholds, timeseries


def exporter_dashboard(cfg: MixinConfig) -> dict[str, Any]:
    """The exporter dashboard's JSON."""
    q = PanelQueries(cfg)
    limit = cfg.response_limit_bytes
    # A deployment refreshes if any of its replicas does: its data is served.
    up = q.latest("scenario_up")
    age = f"time() - {q.latest('scenario_data_as_of_timestamp_seconds')}"
    response = q.latest("scenario_exporter_upstream_response_bytes")
    up_mappings = [{"type": "value", "options": {
        "0": {"text": "Failing", "color": "red", "index": 0},
        "1": {"text": "OK", "color": "green", "index": 1}}}]
    age_steps = thresholds((None, "green"), (seconds(cfg.data_stale_after), "orange"),
                           (seconds(cfg.exporter_max_stale), "red"))
    duration = "scenario_exporter_upstream_request_duration_seconds_bucket"

    def latency(quantile: float) -> tuple[str, str]:
        expr = (f"histogram_quantile({quantile}, "
                f"{promql.aggregate_by('sum', q.by('le'), f'rate({q.window(duration)})')})")
        return expr, f"p{int(quantile * 100)} · {q.legend}"

    # Series without an account label belong to the exporters serving the selected
    # accounts: the targets that serve their scenario_up (/metrics, or each account's
    # /probe), or the exporter's own gauge of every account it serves (/metrics beside
    # /probe targets).
    serving = (f"and on ({promql.label_list((q.deployment, 'job', 'instance'))}) "
               f"({q.sel('scenario_up')} or "
               f"{q.sel('scenario_exporter_folded_series')})")
    items: list[Panel | Row] = [
        Row("Health"),
        stat("Upstream refresh",
             "Whether the latest refresh of each account from Scenario's API succeeded "
             "on at least one replica (scenario_up): its data is then served. "
             f"ScenarioRefreshFailing fires after {in_words(cfg.refresh_failing_for)} of "
             "failures.",
             "none", up, q.legend, graph=False, mappings=up_mappings,
             steps=thresholds((None, "red"), (1, "green")), width=6),
        stat("Data age",
             "How old the data served for each account is: now minus the end of the "
             "upstream window it was computed from. Grows up to --cache.ttl between "
             f"refreshes; ScenarioDataStale fires above {seconds(cfg.data_stale_after) // 3600} "
             f"hour; past --cache.max-stale ({cfg.exporter_max_stale} by default) the business "
             "series are withdrawn.",
             "s", age, q.legend, decimals=None, steps=age_steps, width=6),
        gauge("Last response size",
              "Size of the last upstream response body, as a share of the API's 6 MB limit. "
              "The exporter splits the window in two when a response is too large.",
              f"100 * {response} / {limit}", q.legend, width=6),
        stat("Exporter version",
             "Versions of the exporters serving the selected accounts, and of the Python "
             "running them (scenario_exporter_build_info); the value is how many run it.",
             "none",
             f"count by (version, python_version) "
             f"({q.sel('scenario_exporter_build_info', account=False)} {serving})",
             "{{version}} (Python {{python_version}})", graph=False, text_mode="name",
             steps=thresholds((None, "text")), width=6),

        Row("Upstream API"),
        timeseries(
            "Upstream requests by status code",
            "Requests per hour to Scenario's API, by HTTP status code (or timeout, "
            "connection_error, invalid_response). One per account and --cache.ttl when "
            "healthy; 429 is rate limiting, 401/403 bad credentials.",
            "suffix: req/h",
            [(promql.per_hour(q.process_rate_sum("scenario_exporter_upstream_requests_total",
                                                 "code")),
              f"{{{{code}}}} · {q.legend}")],
            stacked=True, bars=True),
        timeseries(
            "Upstream latency",
            "Percentiles of the duration of upstream requests "
            "(scenario_exporter_upstream_request_duration_seconds histogram).",
            "s", [latency(0.5), latency(0.9), latency(0.99)]),
        timeseries(
            "Upstream response size vs the 6 MB limit",
            "Size of the last upstream response body per account. Scenario's API gateway "
            "refuses responses above 6 MB (red line); the exporter then splits the window.",
            "decbytes", [(response, q.legend)], rate=False,
            steps=thresholds((None, "green"), (limit * 0.8, "orange"),
                             (limit, "red")),
            threshold_style="line+area"),
        timeseries(
            "Refresh failures by reason",
            "Failed refreshes per hour, by reason (auth, rate_limited, request_cap, "
            "server_error, timeout, too_large, ...). See the runbook for each reason.",
            "suffix: failures/h",
            [(promql.per_hour(q.process_rate_sum("scenario_exporter_refresh_failures_total",
                                          "reason")), f"{{{{reason}}}} · {q.legend}")],
            stacked=True, bars=True, legend_calcs=("max", "lastNotNull")),

        Row("Exporter"),
        Panel("state-timeline", "Refresh status over time",
              "scenario_up per account over time: green while refreshes succeed, red while "
              "they fail.",
              "none", [target(up, q.legend)], 12, 6,
              options={"mergeValues": True, "showValue": "auto", "alignValue": "left",
                       "rowHeight": 0.9,
                       "legend": {"showLegend": False, "displayMode": "list",
                                  "placement": "bottom"},
                       "tooltip": {"mode": "single", "sort": "none"}},
              defaults={"color": {"mode": "thresholds"}, "mappings": up_mappings,
                        "thresholds": thresholds((None, "red"), (1, "green")),
                        "custom": {"fillOpacity": 80, "lineWidth": 0}}),
        timeseries(
            "Data age over time",
            "Age of the data served per account over time (see the stat above). A "
            "sawtooth up to --cache.ttl is normal.",
            "s", [(age, q.legend)], rate=False, steps=age_steps,
            threshold_style="dashed", height=6),
        timeseries(
            "Folded series",
            "Models and users beyond --limits.max-models / --limits.max-users, folded "
            "into one __other__ series per account (sums stay exact, detail is lost). "
            "Above 0: raise the limit if the cardinality is affordable.",
            "short",
            [(promql.aggregate_by("max", q.by("section"),
                                  q.sel("scenario_exporter_folded_series")),
              f"{{{{section}}}} · {q.legend}")],
            rate=False, width=8, height=8, legend_calcs=("max", "lastNotNull")),
        timeseries(
            "Scrape duration",
            "How long Prometheus takes to scrape /metrics (its own scrape_duration_seconds "
            "per target). Upstream calls never happen during a scrape after the first "
            "one, so this stays in milliseconds.",
            "s",
            [(f"{q.sel('scrape_duration_seconds', account=False)} {serving}",
              "{{instance}}")],
            rate=False, width=8, height=8),
        timeseries(
            "Upstream downward revisions",
            "Downward revisions per hour by Scenario within a period (a refund, an id no "
            "longer reported), each counted once; the exporter serves the revised sums. "
            "Rare; a steady rate means upstream changed how it counts.",
            "suffix: /h",
            # Every replica that saw a revision counts it: max, so that it counts once.
            [(promql.per_hour(promql.aggregate_by(
                "max", q.by(), f"rate({q.window('scenario_exporter_upstream_decreases_total')})")),
              q.legend)],
            bars=True, width=8, height=8, legend_calcs=("max", "lastNotNull")),
    ]
    return dashboard(
        cfg, q, "scenario-exporter", "Scenario exporter",
        "Health of scenario-exporter: upstream refreshes, data freshness, Scenario API "
        "requests, latency, response size, failures, cardinality caps.",
        items, extra_tags=[], timezone="browser", annotations=[])

