"""What one account has reported in the current period: cardinality caps and revisions.

Both need memory of earlier refreshes, so they live here and not in the (pure)
collector. The ledger turns each fresh :class:`UsageSnapshot` into the snapshot
that is served:

* **Caps.** At most N models and N users keep a series of their own; the rest
  are added into ``__other__`` so that sums stay exact. The choice is sticky for
  the period (an id that had its own series keeps it; newcomers take free places
  by descending spend), because an id moving in or out of ``__other__`` would
  make both series jump. A user's CU per billing action follows the user.
* **Revisions.** Values are served as upstream sums them, even when upstream
  revises one downwards (a refund) or drops an id: every replica, and a replica
  restarted after the revision, then serves the same figure, whatever history it
  lived through. The ledger only *counts* revisions: each id whose value went
  down since the previous refresh counts once, a vanished id once (not again at
  every refresh). What is compared is what is served: a usage name's credit
  that grows (more refunds) is no revision of its cost. The rules and
  dashboards tell such a drop from a period rollover (docs/metrics.md,
  "Downward revisions").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from exporter.core.values import (
    SECTIONS,
    ActionTotals,
    AnyTotals,
    Totals,
    UsageSnapshot,
    add_totals,
    served_figures,
)

OTHER_ID = "__other__"

# Summing the same points in another order (a split window, say) may differ in
# the last bits; such noise is not a revision.
_RELATIVE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class LedgerResult:
    """The snapshot to serve, how many ids were folded, and how many ids were revised down."""

    snapshot: UsageSnapshot
    folded: Mapping[str, int]
    decreases: int


@dataclass
class _Section:
    kept: set[str] = field(default_factory=set)
    last: dict[str, Totals] = field(default_factory=dict)


class PeriodLedger:
    """Per-account memory of the current period; not thread-safe (one refresh at a time)."""

    def __init__(self, max_models: int, max_users: int) -> None:
        self._caps = {"models": max_models, "users": max_users}
        self._period_start: datetime | None = None
        self._sections: dict[str, _Section] = {}
        self._last_actions: dict[str, ActionTotals] = {}

    def apply(self, snapshot: UsageSnapshot) -> LedgerResult:
        """Fold *snapshot* by the caps, and count what went down since the last refresh."""
        if snapshot.window.start != self._period_start:
            self._period_start = snapshot.window.start
            self._sections = {}
            self._last_actions = {}
        folded: dict[str, int] = {}
        decreases = 0
        served: dict[str, dict[str, Any]] = {}  # each section keeps its kind of totals
        for name in SECTIONS:
            section = self._sections.setdefault(name, _Section())
            totals = getattr(snapshot, name)
            cap = self._caps.get(name)
            if cap is not None:
                totals, folded[name] = _fold(totals, section.kept, cap)
            served[name] = dict(totals)
            decreases += _revised(section.last, served[name])
            section.last = served[name]
        # A user's CU per action follows the user: into __other__ past the user cap.
        actions = _fold_actions(snapshot.user_actions, served["users"])
        decreases += sum(_revised(before, actions.get(user_id, {}), _as_figures)
                         for user_id, before in self._last_actions.items()
                         if actions.get(user_id) != before)
        self._last_actions = actions
        result = replace(snapshot, models=served["models"], assets=served["assets"],
                         nsfw=served["nsfw"], usages=served["usages"], users=served["users"],
                         quality_gates=served["quality_gates"],
                         user_actions=actions,
                         model_names={k: v for k, v in snapshot.model_names.items()
                                      if k in served["models"]},
                         user_identities={k: v for k, v in snapshot.user_identities.items()
                                          if k in served["users"]})
        return LedgerResult(result, folded, decreases)


def _fold_actions(user_actions: Mapping[str, ActionTotals],
                  served_users: Mapping[str, Any]) -> dict[str, ActionTotals]:
    """The users' CU per action, those of a user without a series of its own (past the
    user cap) added into ``__other__``'s."""
    folded = {user_id: actions for user_id, actions in user_actions.items()
              if user_id in served_users and user_id != OTHER_ID}
    if len(folded) == len(user_actions):
        return folded
    other: dict[str, float] = {}
    for user_id, actions in user_actions.items():
        if user_id not in folded:
            for action, value in actions.items():
                other[action] = other.get(action, 0.0) + value
    folded[OTHER_ID] = other
    return folded


def _fold(totals: Mapping[str, AnyTotals], kept: set[str],
          cap: int) -> tuple[dict[str, AnyTotals], int]:
    """Keep at most *cap* ids (sticky in *kept*), add the others into ``__other__``."""
    if OTHER_ID not in kept and len(kept.union(totals)) <= cap:
        kept.update(totals)
        return dict(totals), 0
    # Newcomers take the free places by descending first field (spend, count), then id.
    newcomers = sorted((k for k in totals if k not in kept and k != OTHER_ID),
                       key=lambda k: (-totals[k][0], k))
    free = cap - len(kept - {OTHER_ID})
    kept.update(newcomers[:max(free, 0)])
    result: dict[str, AnyTotals] = {}
    other: AnyTotals | None = None
    folded = 0
    for key, values in totals.items():
        if key in kept and key != OTHER_ID:
            result[key] = values
            continue
        folded += 1
        other = values if other is None else add_totals(other, values)
    if other is not None:
        result[OTHER_ID] = other
    kept.add(OTHER_ID)
    return result, folded


def _revised(before: Mapping[Any, Any], now: Mapping[Any, Any],
             figures: Callable[[Any], tuple[float, ...]] = served_figures) -> int:
    """How many ids of *before* went down in *now*: a lower served figure (of
    *figures*) or no value.

    Compared with the previous refresh (not with the highest value ever served),
    so that one revision counts once, however many refreshes follow it. Served
    figures: a credit that grows (a refund) is no revision of the cost. An id
    whose totals did not change (most of them, from one refresh to the next) is
    skipped without computing its figures.
    """
    count = 0
    for key, old in before.items():
        new = now.get(key)
        if new is None or (new != old and any(
                b < a - _RELATIVE_TOLERANCE * max(abs(a), 1.0)
                for a, b in zip(figures(old), figures(new), strict=True))):
            count += 1
    return count


def _as_figures(value: float) -> tuple[float, ...]:
    """A user's CU for one action as the one figure it is served as."""
    return (max(value, 0.0),)

