"""The landing page's bill (exporter.live.landing): the projection at the pace so far,
each cell of a row, why an account has none, and escaping. Each expected figure is
worked out here by hand from the plan's numbers."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, cast

import pytest

from exporter.core.account import AccountConfig
from exporter.core.team import PlanLimits, PrepaidPack, TeamView
from exporter.core.values import AccountView
from exporter.live.exporter import UsageExporter
from exporter.live.landing import bill_cells, bill_rows, no_bill_reason, projection

DAY = 86400.0


def at(day: int, hour: int = 0) -> float:
    return datetime(2026, 11, day, hour, tzinfo=timezone.utc).timestamp()


START, END = at(1, 9), at(21, 9)  # a 20-day period from the 1st 09:00 UTC
LIMITS = PlanLimits(period_start=START, period_end=END, plan="cu-team-v2", allowance=100000.0,
                    used=40000.5, packs=(PrepaidPack(3000.0, at(15, 12)),
                                         PrepaidPack(7000.0, None),
                                         PrepaidPack(500.0, at(15, 12)),
                                         PrepaidPack(900.0, at(2))))  # expired


def team(limits: PlanLimits | None = LIMITS, **fields: Any) -> TeamView:
    return TeamView("studio", team_id=fields.pop("team_id", "team_a"), limits=limits, **fields)


def test_the_projection_carries_the_pace_so_far_to_the_end() -> None:
    # 5 of the 20 days gone: 4x what was used.
    assert projection(LIMITS, START + 5 * DAY) == pytest.approx(160002.0)
    assert projection(LIMITS, END) == LIMITS.used  # over: what was used
    assert projection(LIMITS, END + DAY) == LIMITS.used
    assert projection(LIMITS, START) is None  # no time elapsed: no pace
    assert projection(PlanLimits(None, END, used=1.0), START + DAY) is None
    assert projection(PlanLimits(START, END), START + DAY) is None


def test_a_row_holds_the_period_the_spend_the_projection_and_the_prepaid_units() -> None:
    read = START + 5 * DAY
    cells = bill_cells(team(limits_at=read, endpoints={"team_limits": True}), read + 60)
    assert cells == [
        "2026-11-01 09:00 – 2026-11-21 09:00 (15.0 days left)",
        "40,000.5 of 100,000 CU (40.0%)",
        # 60,002 CU over the allowance, more than the 10,500 prepaid units left.
        "160,002 CU (160% of the allowance; 60,002 CU over, more than the prepaid left)",
        "10,500 CU",
        "2026-11-15 12:00 UTC: 3,500 CU (in 9.1 days)",
        "2026-11-06 09:00:00 UTC (60s ago)",
    ]


def test_prepaid_units_that_cover_the_overshoot_are_said_so() -> None:
    limits = PlanLimits(START, END, allowance=100000.0, used=26000.0,
                        packs=(PrepaidPack(5000.0, None),))
    read = START + 5 * DAY  # 104,000 at the end: 4,000 over, 5,000 prepaid without expiry
    cells = bill_cells(team(limits, limits_at=read), read)
    assert cells[2] == "104,000 CU (104% of the allowance; 4,000 CU over, prepaid left covers it)"
    assert cells[3:5] == ["5,000 CU", "no expiry given"]


def test_missing_figures_are_said_not_guessed() -> None:
    cells = bill_cells(team(PlanLimits(None, None, used=12.25), limits_at=START), START)
    assert cells[:5] == ["not given", "12.25 CU (no allowance given)", "unknown", "0 CU", "none"]
    failing = team(limits_at=START + DAY, endpoints={"team_limits": False})
    assert bill_cells(failing, END + 60)[0] == \
        "2026-11-01 09:00 – 2026-11-21 09:00 (ended, the next is not read yet)"
    assert bill_cells(failing, END + 60)[5].endswith(
        "; the last call failed, these are the last good figures")


@pytest.mark.parametrize(("view", "reason"), [
    (None, "no team figures for this account"),
    (team(None, team_id=None), "not read yet"),
    (team(None, team_id=None, endpoints={"team": False}), "GET /teams fails"),
    (team(None, team_id=None, endpoints={"team": True}), "the key sees no team"),
    (team(None, team_id=None, candidates=("team_a", "team_b"), endpoints={"team": True}),
     "the key sees several teams: set team_id (see Team above)"),
    (team(None), "not read yet"),
    (team(None, endpoints={"team_limits": False, "team": True}),
     "GET /teams/team_a/limits fails"),
    (team(), None),
], ids=["no-refresher", "never-read", "teams-fails", "no-team", "several", "limits-not-yet",
        "limits-fail", "read"])
def test_why_an_account_has_no_bill(view: TeamView | None, reason: str | None) -> None:
    said = no_bill_reason(view)
    if reason is None or not reason.startswith("GET"):
        assert said == reason
    else:  # a failing endpoint: which, and what a 403 means
        assert said is not None and said.startswith(reason) and "team scope" in said


def test_every_value_is_escaped() -> None:
    """Account names are plain (the config checks them); a team id comes from upstream."""
    markup = "<b>x</b>&"
    views = [AccountView(AccountConfig(name="studio", api_key="k", api_secret="s"))]
    failing = team(None, team_id=markup, endpoints={"team_limits": False})
    exporter = cast(UsageExporter, SimpleNamespace(
        views=lambda: views, teams=[SimpleNamespace(view=failing)]))
    (row,) = bill_rows(exporter, START + 2 * DAY)
    assert row.startswith('<tr><th scope="row">studio</th><td colspan="6">GET /teams/')
    assert "<b>" not in row and "&lt;b&gt;x&lt;/b&gt;&amp;" in row
