"""The committed dashboards and rules as the tests read them.

PromQL goes through a real parser (promql-parser, the binding of Prometheus'
Rust parser), with Grafana's variables set as Grafana would before Prometheus
sees a query.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import promql_parser as promql
import yaml

from testkit.repo import REPO_ROOT

DASHBOARD_FILES = sorted((REPO_ROOT / "dashboards").glob("*.json"))
RULE_FILES = sorted((REPO_ROOT / "rules").glob("*.yml"))


# Grafana interpolates these before Prometheus parses the query: stand-ins of the
# same kind (a duration) that no dashboard uses, mapped back after parsing.
RANGE_VARIABLES = {"$__rate_interval": timedelta(seconds=1111),
                   "$__range": timedelta(seconds=2222)}


# ... and these, which stand for numbers: the length of $__rate_interval in
# milliseconds. Replaced first: its name begins with another variable's.
NUMBER_VARIABLES = {"$__rate_interval_ms": "1111000"}


MATCH_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~",
             "MatchOp.NotRe": "!~"}


@dataclass(frozen=True)
class Selector:
    """A vector selector found in an expression."""

    name: str
    # Each matcher as written: ``account=~"$account"``.
    matchers: frozenset[str] = frozenset()
    range: str | None = None
    # Innermost enclosing function call or aggregation, or None.
    function: str | None = None
    at: str | None = None
    offset: timedelta | None = None


def parse(expr: str) -> Any:
    """*expr* parsed, Grafana's variables replaced by stand-ins of their kind."""
    for name, number in NUMBER_VARIABLES.items():
        expr = expr.replace(name, number)
    for name, value in RANGE_VARIABLES.items():  # in a range and after offset
        expr = expr.replace(name, f"{value.seconds}s")
    return promql.parse(expr)


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of *expr*, with its matchers, range and enclosing function."""
    ranges = {value: name for name, value in RANGE_VARIABLES.items()}
    found: list[Selector] = []

    def walk(node: Any, function: str | None, window: timedelta | None = None) -> None:
        if isinstance(node, promql.VectorSelector):
            matchers = frozenset(f'{m.name}{MATCH_OPS[str(m.op)]}"{m.value}"'
                                 for m in node.matchers.matchers)
            found.append(Selector(
                node.name or "", matchers,
                None if window is None else ranges.get(window, str(window)),
                function, None if node.at is None else str(node.at).removeprefix("@ "),
                node.offset))
        elif isinstance(node, promql.MatrixSelector):
            walk(node.vector_selector, function, node.range)
        elif isinstance(node, promql.Call):
            for arg in node.args:
                walk(arg, node.func.name)
        elif isinstance(node, promql.AggregateExpr):
            walk(node.expr, str(node.op))
        elif isinstance(node, promql.BinaryExpr):
            walk(node.lhs, function)
            walk(node.rhs, function)
        elif isinstance(node, (promql.ParenExpr, promql.UnaryExpr, promql.SubqueryExpr)):
            walk(node.expr, function)

    walk(parse(expr), None)
    return found


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included; not the rows."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(where, expr)`` of every query: panel targets and annotations."""
    for panel in panels(dashboard):
        for target in panel["targets"]:
            yield f"{panel['title']} {target['refId']}", target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']}", annotation["expr"]


def recorded_series() -> set[str]:
    return {rule["record"] for path in (REPO_ROOT / "rules").glob("*.yml")
            for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
            for rule in group["rules"] if "record" in rule}


def substitute(expr: str, accounts: list[str], job: str = "scenario-exporter", *,
               rate_window_seconds: int = 60, dashboard_range: str = "10m") -> str:
    """*expr* with the dashboard's variables set as Grafana would: these accounts, this job,
    a rate window (``$__rate_interval``, and its length ``$__rate_interval_ms``, replaced
    first since its name begins with the other's) and the dashboard's range."""
    expr = expr.replace("$account", "(" + "|".join(accounts) + ")").replace("$job", job)
    for variable, value in (("$__rate_interval_ms", str(rate_window_seconds * 1000)),
                            ("$__rate_interval", f"{rate_window_seconds}s"),
                            ("$__range", dashboard_range), ("$datasource", "prometheus")):
        expr = expr.replace(variable, value)
    assert "$" not in expr.replace('"$1"', ""), f"unsubstituted variable in {expr}"
    return expr


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str
    unit: str

    def __str__(self) -> str:
        return f"{self.dashboard}:{self.panel}:{self.ref}"

    @property
    def panel_key(self) -> str:
        return f"{self.dashboard}:{self.panel}"


def panel_queries() -> list[PanelQuery]:
    queries = []
    for path in DASHBOARD_FILES:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in panels(dashboard):
            for target in panel["targets"]:
                queries.append(PanelQuery(path.stem, panel["title"], target["refId"],
                                          target["expr"],
                                          panel["fieldConfig"]["defaults"]["unit"]))
    return queries
