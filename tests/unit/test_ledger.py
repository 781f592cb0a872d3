"""The cardinality caps and the counting of downward revisions."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.core.ledger import OTHER_ID, PeriodLedger
from exporter.core.period import PeriodWindow
from exporter.core.values import ModelTotals, UsageSnapshot, UsageTotals, UserTotals

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def snap(models: dict[str, float], users: dict[str, float] | None = None,
         start: datetime = START, hours: int = 1) -> UsageSnapshot:
    window = PeriodWindow(start, start + timedelta(hours=hours))
    return UsageSnapshot(window,
                         models={k: ModelTotals(v, v / 2, 0.0, 0.0, v) for k, v in models.items()},
                         users={k: UserTotals(v, 0.0) for k, v in (users or {}).items()},
                         model_names={k: k.upper() for k in models})


def test_a_downward_revision_is_served_as_upstream_says_and_counted_once() -> None:
    """Served values never depend on what the process saw before: a replica started
    after the revision serves the same figures."""
    ledger = PeriodLedger(10, 10)
    ledger.apply(snap({"a": 100.0, "b": 5.0}))
    result = ledger.apply(snap({"a": 90.0, "b": 6.0}, hours=2))
    assert result.snapshot.models["a"] == (90.0, 45.0, 0.0, 0.0, 90.0)
    assert result.snapshot.models["b"] == (6.0, 3.0, 0.0, 0.0, 6.0)
    assert result.decreases == 1  # one id revised, whatever number of its fields went down
    fresh = PeriodLedger(10, 10).apply(snap({"a": 90.0, "b": 6.0}, hours=2))
    assert fresh.snapshot == result.snapshot and fresh.decreases == 0
    # The next refreshes see the revised value as it is: no more counts.
    assert ledger.apply(snap({"a": 90.0, "b": 6.0}, hours=3)).decreases == 0
    again = ledger.apply(snap({"a": 120.0, "b": 6.0}, hours=4))
    assert again.snapshot.models["a"].cost == 120.0 and again.decreases == 0


def test_summation_noise_is_not_a_revision() -> None:
    ledger = PeriodLedger(10, 10)
    ledger.apply(snap({"a": 0.1 + 0.2}))
    result = ledger.apply(snap({"a": 0.3}, hours=2))  # 0.30000000000000004 before
    assert result.decreases == 0
    assert result.snapshot.models["a"].cost == 0.3


def test_an_id_that_vanishes_is_counted_once_not_at_every_refresh() -> None:
    ledger = PeriodLedger(10, 10)
    ledger.apply(snap({"a": 10.0, "b": 20.0}))
    counts = [ledger.apply(snap({"a": 10.0 + hour}, hours=hour)).decreases
              for hour in range(2, 50)]
    assert counts == [1] + [0] * 47
    result = ledger.apply(snap({"a": 60.0}, hours=50))
    assert set(result.snapshot.models) == {"a"}
    assert set(result.snapshot.model_names) == {"a"}
    # Back, then gone again: a second revision.
    ledger.apply(snap({"a": 61.0, "b": 20.0}, hours=51))
    assert ledger.apply(snap({"a": 62.0}, hours=52)).decreases == 1


def test_a_new_period_starts_from_scratch() -> None:
    ledger = PeriodLedger(10, 10)
    ledger.apply(snap({"a": 1000.0}))
    result = ledger.apply(snap({"a": 3.0}, start=START + timedelta(days=30)))
    assert result.snapshot.models == {"a": (3.0, 1.5, 0.0, 0.0, 3.0)}
    assert result.decreases == 0


def test_caps_fold_the_smallest_and_keep_sums_exact() -> None:
    ledger = PeriodLedger(max_models=2, max_users=1)
    raw = {"a": 50.0, "b": 40.0, "c": 3.0, "d": 2.5}
    result = ledger.apply(snap(raw, users={"u1": 7.0, "u2": 9.0}))
    models = result.snapshot.models
    assert set(models) == {"a", "b", OTHER_ID}
    assert models[OTHER_ID].cost == 5.5
    assert sum(v.cost for v in models.values()) == sum(raw.values())
    assert result.folded == {"models": 2, "users": 1}
    assert set(result.snapshot.users) == {"u2", OTHER_ID}
    assert set(result.snapshot.model_names) == {"a", "b"}  # no info for folded ids


def test_caps_are_sticky_within_the_period() -> None:
    """An id that had its own series keeps it, even when a newcomer outspends it;
    otherwise both it and __other__ would jump."""
    ledger = PeriodLedger(max_models=2, max_users=10)
    ledger.apply(snap({"a": 50.0, "b": 40.0, "c": 3.0}))
    result = ledger.apply(snap({"a": 51.0, "b": 41.0, "c": 300.0, "e": 1.0}, hours=2))
    assert set(result.snapshot.models) == {"a", "b", OTHER_ID}
    assert result.snapshot.models[OTHER_ID].cost == 301.0
    assert result.decreases == 0
    # next period: the ranking is made afresh
    fresh = ledger.apply(snap({"a": 1.0, "b": 2.0, "c": 300.0}, start=START + timedelta(days=31)))
    assert set(fresh.snapshot.models) == {"c", "b", OTHER_ID}


def test_no_other_series_while_under_the_cap() -> None:
    result = PeriodLedger(3, 3).apply(snap({"a": 1.0, "b": 2.0, "c": 3.0}))
    assert OTHER_ID not in result.snapshot.models and result.folded["models"] == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from("abcdefghij"),
                                st.integers(min_value=0, max_value=50), max_size=10),
                min_size=1, max_size=8),
       st.integers(min_value=1, max_value=6))
def test_growing_upstream_totals_give_exact_monotone_counters(increments: list[dict[str, int]],
                                                              cap: int) -> None:
    """Whatever the cap and the order ids appear in: sums exact, no series decreases."""
    ledger = PeriodLedger(max_models=cap, max_users=cap)
    truth: dict[str, float] = {}
    served_before: dict[str, float] = {}
    for hour, step in enumerate(increments, start=1):
        for key, add in step.items():
            truth[key] = truth.get(key, 0.0) + add
        result = ledger.apply(snap(dict(truth), hours=hour))
        models = {k: v.cost for k, v in result.snapshot.models.items()}
        assert result.decreases == 0
        assert sum(models.values()) == sum(truth.values())
        assert len([k for k in models if k != OTHER_ID]) <= cap
        for key, value in served_before.items():
            assert models[key] >= value
        served_before = models


def test_a_growing_credit_is_no_revision_and_a_shrinking_one_is() -> None:
    """A usage name's cost sum going further below 0 (more refunds) grows its credit
    counter: what is served only grows, so nothing is counted."""
    ledger = PeriodLedger(10, 10)

    def refunds(cost: float, hours: int) -> UsageSnapshot:
        return UsageSnapshot(PeriodWindow(START, START + timedelta(hours=hours)),
                             usages={"refunds": UsageTotals(2.0 * hours, 0.0, cost, 0.0, 0.0,
                                                            0.0)},
                             priced_usages=frozenset({"refunds"}))

    assert ledger.apply(refunds(-10.0, 1)).decreases == 0
    assert ledger.apply(refunds(-25.0, 2)).decreases == 0  # credit 10 -> 25
    assert ledger.apply(refunds(-5.0, 3)).decreases == 1  # credit 25 -> 5: revised


def test_a_users_actions_follow_the_user_into_other_and_count_once_when_gone() -> None:
    ledger = PeriodLedger(10, 1)
    first = snap({}, {"big": 100.0, "small": 5.0})
    actions = {"big": {"generation": 90.0, "training": 10.0}, "small": {"generation": 5.0}}
    result = ledger.apply(replace(first, user_actions=actions))
    assert result.snapshot.user_actions == {"big": {"generation": 90.0, "training": 10.0},
                                            OTHER_ID: {"generation": 5.0}}
    later = ledger.apply(replace(snap({}, {"big": 120.0, "small": 6.0}, hours=2),
                                 user_actions={"big": {"generation": 110.0},
                                               "small": {"generation": 6.0}}))
    assert later.decreases == 1  # (big, training) vanished: once
    assert ledger.apply(replace(snap({}, {"big": 130.0, "small": 6.0}, hours=3),
                                user_actions=later.snapshot.user_actions)).decreases == 0
