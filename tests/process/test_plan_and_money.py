"""End to end: the team's plan alerts and the money rules on real Prometheus servers.

On Prometheus 2 and on Prometheus 3 (the version is in each test's id), one
exporter with a price reads the loopback fake, whose demo team has a prepaid
pack of 4000 CU expiring 4 to 5 days from now (exporter/upstream/demo_team.py);
one Prometheus loads the rules, scraping and evaluating every second. In order,
on the same stack:

- ScenarioPrepaidUnitsExpiring fires, with the fake's units and expiry;
- the exporter restarts with a new price (its series go stale meanwhile): the
  money spent this period keeps every CU priced before at the old price, and
  prices only what is spent afterwards at the new one;
- the team endpoints answer 403: ScenarioTeamEndpointDown is pending, the team's
  figures are withdrawn after --cache.max-stale, and the prepaid alert resolves,
  while usage data goes on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from exporter.upstream.demo import DemoAccount
from testkit.dashboards import RULE_FILES
from testkit.fake_upstream import FakeUpstream
from testkit.processes import ExporterProcess, Processes, free_port
from testkit.prometheus import (
    BUILDS,
    JOB,
    START_TIMEOUT,
    Prometheus,
    prometheus_config,
    require_build,
    start_prometheus,
)
from testkit.served import ACCOUNT, API_KEY, API_SECRET
from testkit.waiting import wait_for

PRICE, NEW_PRICE = 0.5, 1.0
MAX_STALE = 10.0
PREPAID_ALERT = "ScenarioPrepaidUnitsExpiring"
MONEY = "account:scenario_model_cost_money:period_to_date"
PRICED = "account:scenario_model_cost_creative_units:priced"
PRICE_SERVED = "max without (instance, pod) (scenario_creative_unit_price)"


@dataclass
class Stack:
    """The fake upstream, the exporter on a fixed address, and Prometheus."""

    fake: FakeUpstream
    processes: Processes
    address: str
    exporter: ExporterProcess
    prometheus: Prometheus

    def logs(self) -> str:
        return "\n".join([self.prometheus.process.tail(),
                          "\n".join(self.exporter.stderr_lines[-10:])])

    def start_exporter(self, price: float) -> ExporterProcess:
        """The exporter at price *price*, refreshing usages and the team every second;
        a calendar month as period, whichever the default, so that a restart keeps it."""
        exporter = self.processes.start(
            "--web.listen-address", self.address, "--scenario.api-url", self.fake.url,
            "--period", "month", "--cache.ttl", "1s", "--cache.max-stale", f"{MAX_STALE:g}s",
            "--team.refresh-interval", "1s", "--upstream.max-requests-per-hour", "100000",
            "--price.per-creative-unit", str(price), "--log.level", "warning",
            env={"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": API_SECRET},
            port=int(self.address.rpartition(":")[2]))
        exporter.wait_ready(timeout=START_TIMEOUT, interval=0.1)
        return exporter


@pytest.fixture(scope="module", params=BUILDS)
def stack(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    build = require_build(request.param)
    tmp = tmp_path_factory.mktemp(f"plan-{build}")
    with FakeUpstream(DemoAccount(), API_KEY, API_SECRET) as fake, Processes() as processes:
        stack = Stack(fake, processes, f"127.0.0.1:{free_port()}", None, None)  # type: ignore[arg-type]
        stack.exporter = stack.start_exporter(PRICE)
        stack.prometheus = start_prometheus(build, processes, "plan",
                                            prometheus_config([stack.address], RULE_FILES),
                                            tmp / "data")
        yield stack


def active(server: Prometheus, alertname: str) -> list[dict[str, Any]]:
    return [alert for alert in server.api("alerts")["alerts"]
            if alert["labels"]["alertname"] == alertname]


def value(server: Prometheus, expr: str, at: float) -> float | None:
    """The one value of *expr* at *at*, or None when it has none."""
    result = server.query(expr, at)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def money_and_priced(server: Prometheus) -> tuple[float, float] | None:
    """The money spent this period and the CU it priced, at one evaluation of a moment
    ago (both recorded by it), once both are there."""
    at = time.time() - 2
    money, priced = value(server, MONEY, at), value(server, PRICED, at)
    return (money, priced) if money is not None and priced is not None else None


def test_the_prepaid_expiry_alert_fires_on_the_fakes_pack(stack: Stack) -> None:
    (alert,) = wait_for(lambda: [a for a in active(stack.prometheus, PREPAID_ALERT)
                                 if a["state"] == "firing"], 60,
                        f"{PREPAID_ALERT} to fire", stack.logs, interval=0.5)
    assert (alert["labels"]["account"], alert["labels"]["job"]) == (ACCOUNT, JOB)
    assert "instance" not in alert["labels"]
    served = stack.exporter.metrics()
    expiry = served.value("scenario_prepaid_next_expiry_timestamp_seconds", account=ACCOUNT)
    units = served.value("scenario_prepaid_expiring_next_creative_units", account=ACCOUNT)
    assert units == 4000.0 and expiry is not None
    assert 4 * 86400 <= expiry - time.time() <= 5 * 86400
    # The alert's value is the time left until that expiry when it was evaluated.
    evaluated = expiry - float(alert["value"])
    assert time.time() - 60 <= evaluated <= time.time()
    assert re.fullmatch(rf"4k prepaid Creative Units of account {ACCOUNT} expire in "
                        r"[45]d \d+h \d+m \d+s, unless they are spent first\.",
                        alert["annotations"]["description"]), alert["annotations"]


def test_a_price_change_leaves_the_money_already_spent(stack: Stack) -> None:
    server = stack.prometheus
    money, priced = wait_for(lambda: money_and_priced(server), 60, "the money rules",
                             stack.logs, interval=0.5)
    (sample,) = server.query(MONEY)
    assert sample["metric"]["currency"] == "USD" and "instance" not in sample["metric"]
    # Every CU so far at one price.
    assert money == pytest.approx(PRICE * priced, rel=1e-9)
    before = priced

    assert stack.exporter.terminate() == 0
    stack.exporter = stack.start_exporter(NEW_PRICE)
    wait_for(lambda: value(server, PRICE_SERVED, time.time() - 3) == NEW_PRICE, 60,
             "the new price, evaluated", stack.logs, interval=0.5)
    figures = wait_for(lambda: money_and_priced(server), 30, "the money rules again",
                       stack.logs, interval=0.5)
    money, priced = figures
    # money = PRICE x (the CU priced before the change) + NEW_PRICE x (the rest):
    # the CU priced at the old price, from the figures now, is at least what was
    # priced before the restart, and no more than all.
    at_old_price = (NEW_PRICE * priced - money) / (NEW_PRICE - PRICE)
    tolerance = 1e-9 * priced
    assert before - tolerance <= at_old_price <= priced + tolerance, (before, money, priced)
    # Priced anew, the whole period would cost NEW_PRICE x priced.
    assert money <= NEW_PRICE * priced - (NEW_PRICE - PRICE) * before + tolerance


def test_refused_team_endpoints_withdraw_the_figures_and_resolve_the_alert(
        stack: Stack) -> None:
    server = stack.prometheus
    stack.fake.set_mode("team-403")
    wait_for(lambda: not server.query(f'ALERTS{{alertname="{PREPAID_ALERT}"}}'),
             MAX_STALE + 30, f"{PREPAID_ALERT} to resolve", stack.logs, interval=0.5)
    assert not server.query("scenario_prepaid_creative_units")
    down = active(server, "ScenarioTeamEndpointDown")
    assert {alert["labels"]["endpoint"] for alert in down} == {"team", "team_limits",
                                                               "projects"}
    assert {alert["state"] for alert in down} == {"pending"}  # for 30 minutes
    # Usages go on.
    assert server.query("account:scenario_model_cost_creative_units:period_to_date")
