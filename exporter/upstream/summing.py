"""Period-to-date totals: a parsed upstream response summed into what is exported.

Every exported business value is a sum over the points of the window, so two
halves of a window add up to the whole (:func:`merge`) and the collector needs
nothing but these totals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from exporter.core.errors import InvalidResponse
from exporter.core.period import PeriodWindow
from exporter.core.values import (
    SECTIONS,
    ActionTotals,
    AnyTotals,
    CountTotals,
    ModelTotals,
    Totals,
    UsageSnapshot,
    UsageTotals,
    UserIdentity,
    UserTotals,
    add_totals,
)
from exporter.upstream.schema import CountPoint, UsageResponse, identifier


def _add(into: dict[str, list[float]], key: str, values: Iterable[float], width: int) -> None:
    row = into.get(key)
    if row is None:
        row = into[key] = [0.0] * width
    for index, value in enumerate(values):
        row[index] += value


def _freeze(sums: dict[str, list[float]], section: str,
            kind: Callable[[Iterable[float]], AnyTotals]) -> dict[str, AnyTotals]:
    frozen = {key: kind(row) for key, row in sums.items()}
    _check_finite(frozen, section)
    return frozen


def _check_finite(totals: Mapping[str, Totals], section: str) -> None:
    """Every total finite, and so is any sum of them.

    Totals are added up again later: the ids past a cardinality cap into
    ``__other__``, the halves of a split window. A sum of any subset, taken in
    order, stays below the sum of all magnitudes: if that one is finite, none of
    them can overflow to infinity (which would be exported as a ``+Inf`` counter).
    """
    magnitudes: list[float] = []
    for key, values in totals.items():
        if not magnitudes:
            magnitudes = [0.0] * len(values)
        for index, value in enumerate(values):
            if not math.isfinite(value):
                raise InvalidResponse(f"{section} {key!r}: the sum is not a finite number")
            magnitudes[index] += abs(value)
    if not all(math.isfinite(m) for m in magnitudes):
        raise InvalidResponse(f"{section}: the sum over all ids is not a finite number")


def summarize(response: UsageResponse, window: PeriodWindow) -> UsageSnapshot:
    """Sum every point of *response* per id; discounts become non-negative magnitudes."""
    try:
        return _summarize(response, window)
    except OverflowError:  # a JSON integer beyond the float range, added to a float
        raise InvalidResponse("a number is beyond the range of a float") from None


def _summarize(response: UsageResponse, window: PeriodWindow) -> UsageSnapshot:
    models: dict[str, list[float]] = {}
    for model_row in response.model_usages:
        # A local accumulator per row keeps the hot loop free of dict look-ups.
        cost = cost_api = discount = discount_api = jobs = 0.0
        for mp in model_row.get("points", ()):
            cost += mp.get("cost") or 0.0
            cost_api += mp.get("api_key_cost") or 0.0
            discount += abs(mp.get("discount") or 0.0)
            discount_api += abs(mp.get("api_key_discount") or 0.0)
            jobs += mp.get("jobs") or 0.0
        _add(models, identifier(model_row.get("model_id")),
             (cost, cost_api, discount, discount_api, jobs), 5)

    assets: dict[str, list[float]] = {}
    for asset_row in response.asset_usages:
        _add(assets, identifier(asset_row.get("kind")), _count_sums(asset_row.get("points", ())), 2)
    nsfw: dict[str, list[float]] = {}
    for nsfw_row in response.nsfw_usages:
        _add(nsfw, identifier(nsfw_row.get("label")), _count_sums(nsfw_row.get("points", ())), 2)

    usages: dict[str, list[float]] = {}
    priced: set[str] = set()
    for usage_row in response.usages:
        usage_name = identifier(usage_row.get("usage_name"))
        value = api_key = cost = cost_api = discount = discount_api = 0.0
        for up in usage_row.get("points", ()):
            value += up.get("value") or 0.0
            api_key += up.get("api_key") or 0.0
            if "cost" in up:  # an upstream older than SDK 2.4 prices nothing
                priced.add(usage_name)
                cost += up["cost"] or 0.0
                cost_api += up.get("api_key_cost") or 0.0
                discount += abs(up.get("discount") or 0.0)
                discount_api += abs(up.get("api_key_discount") or 0.0)
        _add(usages, usage_name, (value, api_key, cost, cost_api, discount, discount_api), 6)

    quality_gates: dict[str, list[float]] = {}
    for gate_row in response.quality_gate_usages:
        _add(quality_gates, identifier(gate_row.get("verdict")),
             _count_sums(gate_row.get("points", ())), 2)

    users: dict[str, list[float]] = {}
    user_actions: dict[str, dict[str, float]] = {}
    for row in response.consumption:
        user_id = identifier(row.get("user_id"))
        # The sign convention of `discount` is undocumented: export its magnitude.
        _add(users, user_id, (row.get("value") or 0.0, abs(row.get("discount") or 0.0)), 2)
        actions = _cost_details(row.get("cost_details"))
        if actions:
            into = user_actions.setdefault(user_id, {})
            for action, cost in actions.items():
                into[action] = into.get(action, 0.0) + cost

    model_names = {identifier(m.get("id")): name for m in response.entities.models
                   if (name := m.get("name"))}
    identities = {
        identifier(u.get("id")): UserIdentity(is_api_key=u.get("is_api_key"),
                                              name=u.get("full_name"), email=u.get("email"))
        for u in response.entities.users
    }

    return UsageSnapshot(
        window=window,
        models=_freeze(models, "modelUsages", ModelTotals._make),
        assets=_freeze(assets, "assetUsages", CountTotals._make),
        nsfw=_freeze(nsfw, "nsfwUsages", CountTotals._make),
        usages=_freeze(usages, "usages", UsageTotals._make),
        users=_freeze(users, "consumption", UserTotals._make),
        model_names=model_names,
        user_identities=identities,
        quality_gates=_freeze(quality_gates, "qualityGateUsages", CountTotals._make),
        user_actions=_finite_actions(user_actions),
        priced_usages=frozenset(priced),
    )


def _cost_details(details: object) -> dict[str, float]:
    """CU per billing action of one consumption row; what is not an object of numbers
    (an upstream oddity) is left out, and the rest of the response served."""
    if not isinstance(details, Mapping):
        return {}
    actions: dict[str, float] = {}
    for action, value in details.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue
        try:
            number = float(value)
        except (ValueError, OverflowError):
            continue
        if math.isfinite(number):
            actions[identifier(str(action))] = number
    return actions


def _finite_actions(user_actions: dict[str, dict[str, float]]) -> dict[str, ActionTotals]:
    """The users' CU per action, whose sums stay finite however they are added up (the
    ids past the user cap into ``__other__``), as :func:`_check_finite` asks of totals."""
    magnitude = sum(abs(value) for actions in user_actions.values() for value in actions.values())
    if not math.isfinite(magnitude):
        raise InvalidResponse("consumption costDetails: the sum over all users is not a "
                              "finite number")
    return dict(user_actions)


def _count_sums(points: Iterable[CountPoint]) -> tuple[float, float]:
    count = count_api = 0.0
    for point in points:
        count += point.get("count") or 0.0
        count_api += point.get("count_api_key") or 0.0
    return count, count_api


def _merge_sections(a: Mapping[str, AnyTotals],
                    b: Mapping[str, AnyTotals]) -> dict[str, AnyTotals]:
    merged = dict(a)
    for key, values in b.items():
        merged[key] = add_totals(merged[key], values) if key in merged else values
    return merged


def merge(first: UsageSnapshot, second: UsageSnapshot) -> UsageSnapshot:
    """Add the totals of two adjacent windows (used when a window was split in two).

    Raises :class:`InvalidResponse` when the sums are no longer finite.
    """
    sections = {name: _merge_sections(getattr(first, name), getattr(second, name))
                for name in SECTIONS}
    for name, totals in sections.items():
        _check_finite(totals, name)
    user_actions = {user_id: dict(actions) for user_id, actions in first.user_actions.items()}
    for user_id, actions in second.user_actions.items():
        into = user_actions.setdefault(user_id, {})
        for action, value in actions.items():
            into[action] = into.get(action, 0.0) + value
    return UsageSnapshot(
        window=PeriodWindow(min(first.window.start, second.window.start),
                            max(first.window.end, second.window.end)),
        models=sections["models"],
        assets=sections["assets"],
        nsfw=sections["nsfw"],
        usages=sections["usages"],
        users=sections["users"],
        model_names={**first.model_names, **second.model_names},
        user_identities={**first.user_identities, **second.user_identities},
        quality_gates=sections["quality_gates"],
        user_actions=_finite_actions(user_actions),
        priced_usages=first.priced_usages | second.priced_usages,
    )
