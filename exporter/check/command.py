"""``scenario-exporter check``: one upstream call per account and a human summary.

What users run first to check their key: it prints the period-to-date spend,
the top models and the assets by kind, or the exact reason of the failure.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TextIO

import httpx

from exporter.config.settings import Settings
from exporter.core.errors import UpstreamError
from exporter.core.logs import mask
from exporter.core.period import current_window
from exporter.upstream.client import UsageClient
from exporter.upstream.pieces import fetch_in_pieces

TOP_MODELS = 5


def run_check(settings: Settings, transport: httpx.BaseTransport | None, out: TextIO) -> bool:
    """Check every configured account, printing to *out*; True when all answered."""
    client = UsageClient(settings.api_url, settings.upstream_timeout, transport=transport,
                         ca_file=settings.upstream_ca_file)
    window = current_window(datetime.now(timezone.utc), settings.period,
                            settings.period_anchor_day)
    failed = 0
    try:
        for account in settings.accounts:
            out.write(f"account {account.name} (key {mask(account.key())}), "
                      f"{settings.period} from {window.start:%Y-%m-%d %H:%M} UTC "
                      f"to {window.end:%Y-%m-%d %H:%M} UTC\n")
            try:
                result = fetch_in_pieces(client.fetch_window, account, window)
            except UpstreamError as exc:
                failed += 1
                out.write(f"  FAILED ({exc.reason}): {exc}\n")
                continue
            snap = result.snapshot
            cost = sum(t.cost for t in snap.models.values())
            discount = sum(t.discount for t in snap.models.values())
            jobs = sum(t.jobs for t in snap.models.values())
            out.write(f"  OK: {result.requests} request(s), {result.body_bytes} bytes\n")
            out.write(f"  period-to-date spend: {cost:,.2f} CU "
                      f"(discounts {discount:,.2f} CU, {jobs:,.0f} jobs)\n")
            if account.budget_creative_units:
                share = 100 * cost / account.budget_creative_units
                out.write(f"  budget: {account.budget_creative_units:,.0f} CU, "
                          f"{share:.1f}% used\n")
            top = sorted(snap.models.items(), key=lambda kv: (-kv[1].cost, kv[0]))[:TOP_MODELS]
            if top:
                out.write(f"  top {len(top)} models by spend:\n")
                for model_id, totals in top:
                    name = snap.model_names.get(model_id, "")
                    label = f"{name} ({model_id})" if name else model_id
                    out.write(f"    {totals.cost:>14,.2f} CU  {label}\n")
            if snap.assets:
                kinds = ", ".join(f"{kind} {totals.assets:,.0f}"
                                  for kind, totals in sorted(snap.assets.items()))
                out.write(f"  assets created: {kinds}\n")
            priced = sorted(((name, usage) for name, usage in snap.usages.items()
                             if name in snap.priced_usages and usage.cost),
                            key=lambda item: (-abs(item[1].cost), item[0]))[:TOP_MODELS]
            if priced:
                out.write(f"  top {len(priced)} actions by CU (negative: credited):\n")
                for name, usage in priced:
                    out.write(f"    {usage.cost:>14,.2f} CU  {name}\n")
            if snap.quality_gates:
                verdicts = ", ".join(f"{verdict} {totals.assets:,.0f}"
                                     for verdict, totals in sorted(snap.quality_gates.items()))
                out.write(f"  quality gate: {verdicts}\n")
    finally:
        client.close()
    return not failed
