"""What one account has reported in the current period: cardinality caps and the
never-decreasing guard.

Both need memory of earlier refreshes, so they live here and not in the (pure)
collector. The ledger turns each fresh :class:`UsageSnapshot` into the snapshot
that is served:

* **Caps.** At most N models and N users keep a series of their own; the rest
  are added into ``__other__`` so that sums stay exact. The choice is sticky for
  the period (an id that had its own series keeps it; newcomers take free places
  by descending spend), because an id moving in or out of ``__other__`` would
  make both series jump.
* **Guard.** A counter never decreases within a period: if upstream revises a
  value downwards (or drops an id), the highest value already served is kept and
  the event is counted. A new period starts from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from exporter.snapshot import Totals, UsageSnapshot, UserIdentity

OTHER_ID = "__other__"

# Summing the same points in another order (a split window, say) may differ in
# the last bits; such noise is not a revision.
_RELATIVE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class LedgerResult:
    """The snapshot to serve, how many ids were folded, and how many values went down."""

    snapshot: UsageSnapshot
    folded: Mapping[str, int]
    decreases: int


@dataclass
class _Section:
    kept: set[str] = field(default_factory=set)
    high: dict[str, Totals] = field(default_factory=dict)


class PeriodLedger:
    """Per-account memory of the current period; not thread-safe (one refresh at a time)."""

    def __init__(self, max_models: int, max_users: int) -> None:
        self._caps = {"models": max_models, "users": max_users}
        self._period_start: datetime | None = None
        self._sections: dict[str, _Section] = {}
        # Names of the ids still served: a counter kept by the guard keeps its _info
        # series, or PromQL joins on it (group_left(model_name)) would lose it.
        self._model_names: dict[str, str] = {}
        self._identities: dict[str, UserIdentity] = {}

    def apply(self, snapshot: UsageSnapshot) -> LedgerResult:
        """Fold and guard *snapshot* against what was served earlier in its period."""
        if snapshot.window.start != self._period_start:
            self._period_start = snapshot.window.start
            self._sections = {}
            self._model_names = {}
            self._identities = {}
        folded: dict[str, int] = {}
        decreases = 0
        guarded: dict[str, dict[str, Totals]] = {}
        for name in ("models", "assets", "nsfw", "usages", "users"):
            section = self._sections.setdefault(name, _Section())
            totals: Mapping[str, Totals] = getattr(snapshot, name)
            cap = self._caps.get(name)
            if cap is not None:
                totals, folded[name] = _fold(totals, section.kept, cap)
            guarded[name], changed = _guard(totals, section.high)
            decreases += changed
            section.high = guarded[name]
        model_names = {k: v for k, v in {**self._model_names, **snapshot.model_names}.items()
                       if k in guarded["models"]}
        identities = {k: v for k, v in {**self._identities, **snapshot.user_identities}.items()
                      if k in guarded["users"]}
        self._model_names, self._identities = model_names, identities
        served = replace(snapshot, models=guarded["models"], assets=guarded["assets"],
                         nsfw=guarded["nsfw"], usages=guarded["usages"],
                         users=guarded["users"], model_names=model_names,
                         user_identities=identities)
        return LedgerResult(served, folded, decreases)


def _fold(totals: Mapping[str, Totals], kept: set[str],
          cap: int) -> tuple[dict[str, Totals], int]:
    """Keep at most *cap* ids (sticky in *kept*), add the others into ``__other__``."""
    if OTHER_ID not in kept and len(kept.union(totals)) <= cap:
        kept.update(totals)
        return dict(totals), 0
    # Newcomers take the free places by descending first field (spend), then id.
    newcomers = sorted((k for k in totals if k not in kept and k != OTHER_ID),
                       key=lambda k: (-totals[k][0], k))
    free = cap - len(kept - {OTHER_ID})
    kept.update(newcomers[:max(free, 0)])
    result: dict[str, Totals] = {}
    other: list[float] | None = None
    folded = 0
    for key, values in totals.items():
        if key in kept and key != OTHER_ID:
            result[key] = values
            continue
        folded += 1
        if other is None:
            other = list(values)
        else:
            other = [a + b for a, b in zip(other, values, strict=True)]
    if other is not None:
        result[OTHER_ID] = tuple(other)
    kept.add(OTHER_ID)
    return result, folded


def _guard(totals: Mapping[str, Totals],
           high: Mapping[str, Totals]) -> tuple[dict[str, Totals], int]:
    """Element-wise maximum with what was served before; count real decreases."""
    result = dict(totals)
    decreases = 0
    for key, before in high.items():
        now = result.get(key)
        if now is None:
            # Upstream dropped an id it had reported: its total cannot go back to 0.
            result[key] = before
            decreases += 1
            continue
        if now == before:
            continue
        merged = []
        for old, new in zip(before, now, strict=True):
            if new < old:
                if new < old - _RELATIVE_TOLERANCE * max(abs(old), 1.0):
                    decreases += 1
                new = old
            merged.append(new)
        result[key] = tuple(merged)
    return result, decreases
