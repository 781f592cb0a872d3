"""The truth about a demo account: what each model's counters must add up to.

Computed from the account's cumulative series directly, not from its responses,
so that it checks the whole path (response, client, sums, splitting, ledger).
"""

from __future__ import annotations

from datetime import datetime

from exporter.upstream.demo import DemoAccount, demo_seconds


def model_totals(account: DemoAccount, start: datetime, end: datetime
                 ) -> dict[str, dict[str, float]]:
    """``{model id: {field: total}}`` over ``[start, end)``."""
    a, b = demo_seconds(start), demo_seconds(end)
    out = {}
    for model in account.model_list:
        s = model.jobs
        out[model.id] = {
            "jobs": s.total(b) - s.total(a),
            "cost": (s.total(b) - s.total(a)) * model.unit_cost,
            "cost_api_key": (s.api(b) - s.api(a)) * model.unit_cost,
            "discount": (s.discounted(b) - s.discounted(a)) * model.unit_cost / 4,
            "discount_api_key": (s.api_discounted(b) - s.api_discounted(a))
            * model.unit_cost / 4,
        }
    return out
