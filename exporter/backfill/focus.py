"""FOCUS 1.2 rows of backfilled periods: one per UTC day, account and model with activity.

FOCUS, the FinOps Foundation's FinOps Open Cost and Usage Specification, gives
cost tools one CSV shape for every provider; version 1.2 prices charges in a
virtual currency beside the billing one. Here Creative Units are that pricing
currency, and money comes from the configured price of a Creative Unit.

    ChargePeriodStart,ChargePeriodEnd,ResourceId,PricingCurrencyEffectiveCost,EffectiveCost
    2026-08-01T00:00:00Z,2026-08-02T00:00:00Z,model_3f2a,210.5,2.526

What the cells say:

- ``ChargePeriodStart``/``End``: the UTC day, made of the buckets that start in it
  (the 15-minute buckets of ``--period=day``; a month's daily buckets one by one).
  Buckets of a period that does not start at midnight (a billing period from 14:37)
  keep their own bounds, within the period. ``BillingPeriodStart``/``End``: the period.
- ``PricingCurrencyEffectiveCost``: Creative Units net of discounts, the model's
  ``cost`` minus its ``discount`` (a magnitude: :mod:`exporter.core.values`).
  A refund larger than the day's spend makes it negative: still a ``Usage``
  charge, which FOCUS allows to be negative. ``x_ModelCostCreativeUnits`` and
  ``x_DiscountCreativeUnits`` hold the two terms.
- ``ConsumedQuantity`` and ``PricingQuantity``: the jobs, in ``Jobs`` (a count unit
  in the spec's Unit Format), as the spec's virtual currency example counts executions.
- Money, in the price's currency: ``BilledCost`` = ``EffectiveCost`` = net CU × price,
  ``ListCost`` = ``ContractedCost`` = CU before discounts × price. Without a price
  the exporter knows no money: those four are 0 (FOCUS allows no null there; the
  spec's own example bills usage drawn from prepaid tokens at 0), ``BillingCurrency``
  is the configured currency (USD by default) and ``x_CreativeUnitPrice`` is empty.
- Null is an empty cell: ``ChargeClass`` (no row corrects an invoiced period),
  ``ResourceName`` of a model upstream names not, ``SubAccountId``/``Name`` unless
  the account reads exactly one project (the project id is both: no name is known).
- Numbers are plain decimals, rounded to 15 significant digits: the binary noise
  of summed floats goes (``210.5``, not ``210.50000000000003``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

from exporter.backfill.output import atomic_file
from exporter.backfill.replay import PeriodUsage
from exporter.core.account import DEFAULT_CURRENCY, AccountConfig
from exporter.core.period import PeriodWindow
from exporter.core.values import ModelTotals, add_totals

# FOCUS columns in the spec's (alphabetical) order, then the custom ones.
FOCUS_COLUMNS: tuple[str, ...] = (
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass",
    "ChargeDescription", "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "EffectiveCost",
    "InvoiceIssuerName", "ListCost", "PricingCurrency", "PricingCurrencyEffectiveCost",
    "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName", "ResourceId",
    "ResourceName", "ResourceType", "ServiceCategory", "ServiceName", "ServiceSubcategory",
    "SubAccountId", "SubAccountName",
    "x_ModelCostCreativeUnits", "x_DiscountCreativeUnits", "x_CreativeUnitPrice",
)
PROVIDER = "Scenario"
CREATIVE_UNITS = "CU"  # the pricing currency: a virtual one, any string the spec allows
JOBS = "Jobs"
# Doubles hold 15 significant decimal digits exactly: what lies beyond is noise.
SIGNIFICANT_DIGITS = 15
_COLUMNS = frozenset(FOCUS_COLUMNS)
_ZERO = Decimal(0)


def decimal_of(value: float) -> Decimal:
    """*value* as the decimal it stands for, without the noise of binary sums."""
    return Decimal(format(value, f".{SIGNIFICANT_DIGITS}g"))


def number_text(value: Decimal) -> str:
    """A decimal as the spec's Numeric Format wants it: no exponent, no ``+``,
    no trailing zeros (``210.5``, ``0.0000001``, ``-3``)."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def time_text(moment: datetime) -> str:
    """A moment in the spec's Date/Time Format: ``2026-08-01T00:00:00Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ChargeDay:
    """The models' sums over one charge period: a UTC day, or a bucket of its own."""

    window: PeriodWindow
    models: dict[str, ModelTotals]
    names: dict[str, str]


def charge_days(usage: PeriodUsage) -> Iterator[ChargeDay]:
    """The buckets of *usage* grouped by the UTC day they start in, in time order,
    each group's bounds clipped to the period."""
    groups: dict[date, list[PeriodWindow]] = {}
    sums: dict[date, dict[str, ModelTotals]] = {}
    names: dict[date, dict[str, str]] = {}
    for bucket in usage.buckets:
        day = bucket.window.start.astimezone(timezone.utc).date()
        groups.setdefault(day, []).append(bucket.window)
        into = sums.setdefault(day, {})
        for model_id, totals in bucket.models.items():
            into[model_id] = add_totals(into[model_id], totals) if model_id in into else totals
        names.setdefault(day, {}).update(bucket.model_names)
    for day, windows in groups.items():
        window = PeriodWindow(max(windows[0].start, usage.window.start),
                              min(windows[-1].end, usage.window.end))
        yield ChargeDay(window, sums[day], names[day])


def focus_rows(account: AccountConfig, billing_account_id: str, usage: PeriodUsage,
               price: float | None, currency: str | None) -> Iterator[dict[str, str]]:
    """Rows of one account's period, each a dict column -> cell text ('' for null),
    every column of FOCUS_COLUMNS present.

    *billing_account_id* is the team id, else the account's name; *price* the
    price of a Creative Unit in *currency* (None: no price, see the module docstring).
    """
    unit_price = None if price is None else decimal_of(price)
    project = account.project_ids[0] if len(account.project_ids) == 1 else ""
    common = {
        "BillingAccountId": billing_account_id,
        "BillingAccountName": account.name,
        "BillingCurrency": currency or DEFAULT_CURRENCY,
        "BillingPeriodEnd": time_text(usage.window.end),
        "BillingPeriodStart": time_text(usage.window.start),
        "ChargeCategory": "Usage",
        "ChargeClass": "",
        "ChargeFrequency": "Usage-Based",
        "ConsumedUnit": JOBS,
        "InvoiceIssuerName": PROVIDER,
        "PricingCurrency": CREATIVE_UNITS,
        "PricingUnit": JOBS,
        "ProviderName": PROVIDER,
        "PublisherName": PROVIDER,
        "ResourceType": "Model",
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": PROVIDER,
        "ServiceSubcategory": "Generative AI",
        "SubAccountId": project,
        "SubAccountName": project,
        "x_CreativeUnitPrice": "" if unit_price is None else number_text(unit_price),
    }
    for day in charge_days(usage):
        period = {"ChargePeriodStart": time_text(day.window.start),
                  "ChargePeriodEnd": time_text(day.window.end)}
        for model_id in sorted(day.models):
            totals = day.models[model_id]
            if not (totals.cost or totals.discount or totals.jobs):
                continue  # no activity that day
            gross, discount = decimal_of(totals.cost), decimal_of(totals.discount)
            net = gross - discount
            jobs = number_text(decimal_of(totals.jobs))
            name = day.names.get(model_id, "")
            money = unit_price if unit_price is not None else _ZERO
            yield {
                **common, **period,
                "BilledCost": number_text(net * money),
                "ChargeDescription": f"Jobs run on the Scenario model {name or model_id}, "
                                     "in Creative Units",
                "ConsumedQuantity": jobs,
                "ContractedCost": number_text(gross * money),
                "EffectiveCost": number_text(net * money),
                "ListCost": number_text(gross * money),
                "PricingCurrencyEffectiveCost": number_text(net),
                "PricingQuantity": jobs,
                "ResourceId": model_id,
                "ResourceName": name,
                "x_ModelCostCreativeUnits": number_text(gross),
                "x_DiscountCreativeUnits": number_text(discount),
            }


@dataclass(frozen=True)
class FocusSummary:
    """What the FOCUS file holds."""

    rows: int
    bytes: int


class FocusWriter:
    """CSV with the header once; rows appended period by period; written atomically
    (:func:`exporter.backfill.output.atomic_file`) to *path*, or to a binary stdout
    when path is '-'.

    Rows wait in memory until :meth:`close` (a year of two accounts and 36 models
    is some 26,000 rows): a run that never reaches it leaves no file.
    """

    def __init__(self, path: str, stdout: BinaryIO) -> None:
        self._path = path
        self._stdout = stdout
        self._rows: list[dict[str, str]] = []
        self._closed = False

    def add(self, rows: Iterable[dict[str, str]]) -> int:
        """Keep *rows* for the file; how many. A row without exactly the columns of
        FOCUS_COLUMNS raises ValueError, and none of *rows* is kept."""
        if self._closed:
            raise ValueError("the FOCUS file is written already")
        batch = list(rows)
        for row in batch:
            if row.keys() != _COLUMNS:
                odd = sorted(row.keys() ^ _COLUMNS)
                raise ValueError(f"a FOCUS row without exactly the FOCUS columns: {odd}")
        self._rows.extend(batch)
        return len(batch)

    def close(self) -> FocusSummary:
        """Write the header and every row kept, in the order added."""
        if self._closed:
            raise ValueError("the FOCUS file is written already")
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, FOCUS_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(self._rows)
        data = text.getvalue().encode("utf-8")
        if self._path == "-":
            self._stdout.write(data)
            self._stdout.flush()
        else:
            with atomic_file(Path(self._path)) as out:
                out.write(data)
        self._closed = True
        return FocusSummary(len(self._rows), len(data))
