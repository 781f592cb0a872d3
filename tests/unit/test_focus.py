"""FOCUS 1.2 rows of a backfilled period (exporter/backfill/focus.py): the columns the
spec asks for with the values it allows, sums that are upstream's to the last digit,
money from the configured price, and a CSV written whole or not at all.

The spec's columns are in tests/data/focus-1.2-columns.csv, taken from the FOCUS_Spec
repository at tag v1.2 (its first line says which files). The demo account's totals
over any window are known exactly (testkit.oracle).
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from exporter.backfill import focus
from exporter.backfill.focus import FOCUS_COLUMNS, FocusWriter, focus_rows, number_text
from exporter.backfill.replay import PeriodUsage, split_into_buckets
from exporter.core.account import AccountConfig
from exporter.core.period import PeriodWindow
from exporter.core.values import ModelTotals, UsageSnapshot
from exporter.upstream.demo import DemoAccount
from exporter.upstream.schema import UsageResponse
from testkit.oracle import model_totals

SPEC_FILE = Path(__file__).parents[1] / "data" / "focus-1.2-columns.csv"
AUGUST = PeriodWindow(datetime(2026, 8, 1, tzinfo=timezone.utc),
                      datetime(2026, 9, 1, tzinfo=timezone.utc))
DAY = timedelta(days=1)
DEMO = DemoAccount(models=6, users=2, api_keys=1)
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
# The spec's Numeric Format, as this writer uses it: no exponent, no "+".
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def spec_columns() -> dict[str, dict[str, str]]:
    with SPEC_FILE.open(encoding="utf-8", newline="") as data:
        lines = [line for line in data if not line.startswith("#")]
    return {row["column"]: row for row in csv.DictReader(lines)}


SPEC = spec_columns()


def account(**fields: object) -> AccountConfig:
    return AccountConfig.model_validate({"name": "studio", "api_key": "key",
                                         "api_secret": "secret", **fields})


def demo_usage(window: PeriodWindow, *, drop_zero_points: bool = True) -> PeriodUsage:
    body = DEMO.response(window.start, window.end, ("model-usages",),
                         drop_zero_points=drop_zero_points)
    return split_into_buckets(UsageResponse.model_validate(body), window)


def rows_of(usage: PeriodUsage, price: float | None = None, currency: str | None = None,
            **fields: object) -> list[dict[str, str]]:
    return list(focus_rows(account(**fields), "team_1", usage, price, currency))


def moment(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def sums(rows: list[dict[str, str]], column: str) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        out[row["ResourceId"]] += Decimal(row[column])
    return dict(out)


def active(truth: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {m: t for m, t in truth.items() if t["cost"] or t["discount"] or t["jobs"]}


@pytest.fixture(scope="module")
def august() -> PeriodUsage:
    return demo_usage(AUGUST)


# -- the columns ---------------------------------------------------------------------


def test_the_spec_file_lists_the_57_columns_of_focus_1_2() -> None:
    assert len(SPEC) == 57
    assert {row["requirement"] for row in SPEC.values()} == {
        "Mandatory", "Conditional", "Recommended"}
    assert SPEC["ChargeCategory"]["allowed_values"] == "Usage|Purchase|Tax|Credit|Adjustment"
    assert SPEC["PricingCurrencyEffectiveCost"]["type"] == "Decimal"


def test_the_columns_are_focus_columns_with_every_mandatory_one_then_custom_ones() -> None:
    custom = [c for c in FOCUS_COLUMNS if c not in SPEC]
    assert custom and all(c.startswith("x_") for c in custom)
    mandatory = {c for c, row in SPEC.items() if row["requirement"] == "Mandatory"}
    assert mandatory <= set(FOCUS_COLUMNS)
    assert len(set(FOCUS_COLUMNS)) == len(FOCUS_COLUMNS)
    # Custom columns after every FOCUS column (the spec's Column Handling).
    assert list(FOCUS_COLUMNS) == [c for c in FOCUS_COLUMNS if c in SPEC] + custom
    # What this dataset claims beyond the mandatory: virtual currency, usage, resources.
    assert {"PricingCurrency", "PricingCurrencyEffectiveCost", "ConsumedQuantity",
            "ConsumedUnit", "ResourceId", "ResourceName", "SubAccountId"} <= set(FOCUS_COLUMNS)


# -- the cells -----------------------------------------------------------------------


def check_cells(rows: list[dict[str, str]], billing: PeriodWindow) -> None:
    """Every cell of *rows* as the spec's column (and this dataset's choices) allow."""
    assert rows
    for row in rows:
        assert set(row) == set(FOCUS_COLUMNS)
        for column, cell in row.items():
            if column.startswith("x_"):
                assert cell == "" or NUMBER.match(cell), (column, cell)
                continue
            spec = SPEC[column]
            if cell == "":
                assert spec["allows_nulls"] == "true", column
                continue
            assert cell == cell.strip(), column
            if spec["allowed_values"]:
                assert cell in spec["allowed_values"].split("|"), (column, cell)
            if spec["type"] == "Date/Time":
                assert DATETIME.match(cell), (column, cell)
            elif spec["type"] == "Decimal":
                assert NUMBER.match(cell), (column, cell)
                Decimal(cell)
        # Nullability the spec conditions on the row: a Usage charge, not a correction.
        assert row["ChargeCategory"] == "Usage" and row["ChargeClass"] == ""
        for column in ("PricingQuantity", "PricingUnit", "ConsumedQuantity", "ConsumedUnit",
                       "PricingCurrency", "PricingCurrencyEffectiveCost", "ResourceId",
                       "ResourceType", "ChargeDescription", "BillingAccountName"):
            assert row[column], column
        assert row["ResourceName"] != row["ResourceId"]
        assert (row["SubAccountName"] == "") == (row["SubAccountId"] == "")
        assert re.match(r"^[A-Z]{3}$", row["BillingCurrency"])
        assert row["PricingUnit"] == row["ConsumedUnit"] == "Jobs"
        start, end = moment(row["ChargePeriodStart"]), moment(row["ChargePeriodEnd"])
        assert billing.start <= start < end <= billing.end
        assert end - start <= DAY
        assert (moment(row["BillingPeriodStart"]), moment(row["BillingPeriodEnd"])) == \
            (billing.start, billing.end)


def test_every_cell_of_a_month_follows_its_columns_rules(august: PeriodUsage) -> None:
    check_cells(rows_of(august), AUGUST)
    check_cells(rows_of(august, 0.012, "EUR", project_ids=("proj_1",)), AUGUST)


def test_every_cell_of_a_day_of_15_minute_buckets_follows_its_columns_rules() -> None:
    day = PeriodWindow(AUGUST.start, AUGUST.start + DAY)
    usage = demo_usage(day)
    assert len(usage.buckets) == 96
    rows = rows_of(usage, 0.5, "USD")
    check_cells(rows, day)
    # The 15-minute buckets make one row per model: the day.
    assert len(rows) == len({row["ResourceId"] for row in rows})
    assert {(row["ChargePeriodStart"], row["ChargePeriodEnd"]) for row in rows} == {
        ("2026-08-01T00:00:00Z", "2026-08-02T00:00:00Z")}
    truth = active(model_totals(DEMO, day.start, day.end))
    assert sums(rows, "PricingCurrencyEffectiveCost") == {
        m: Decimal(t["cost"] - t["discount"]) for m, t in truth.items()}


def test_numbers_are_plain_decimals_without_float_noise() -> None:
    assert number_text(focus.decimal_of(0.1 + 0.2)) == "0.3"
    assert number_text(focus.decimal_of(210.50000000000003)) == "210.5"
    assert number_text(focus.decimal_of(1e-7)) == "0.0000001"
    assert number_text(focus.decimal_of(1e20)) == "100000000000000000000"
    assert number_text(focus.decimal_of(12.0)) == "12"
    assert number_text(focus.decimal_of(-0.0)) == "0"
    bucket = UsageSnapshot(AUGUST, models={"m": ModelTotals(0.1 + 0.2, 0.0, 0.1, 0.0, 3.0)},
                           model_names={"m": "Hero"})
    row, = rows_of(PeriodUsage(AUGUST, (bucket,), UsageSnapshot(AUGUST)), 0.1 + 0.2, "USD")
    assert (row["x_ModelCostCreativeUnits"], row["x_DiscountCreativeUnits"],
            row["PricingCurrencyEffectiveCost"], row["ConsumedQuantity"]) == \
        ("0.3", "0.1", "0.2", "3")
    assert (row["x_CreativeUnitPrice"], row["BilledCost"], row["ListCost"]) == \
        ("0.3", "0.06", "0.09")


# -- the sums ------------------------------------------------------------------------


@pytest.mark.parametrize("drop_zero_points", [True, False])
def test_each_day_and_the_month_add_up_to_the_oracle(drop_zero_points: bool) -> None:
    """One row per day and model with activity, holding upstream's exact sums."""
    rows = rows_of(demo_usage(AUGUST, drop_zero_points=drop_zero_points))
    by_day: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_day[row["ChargePeriodStart"]].append(row)
    assert len(by_day) == 31
    for day in range(31):
        start = AUGUST.start + day * DAY
        day_rows = by_day[f"{start:%Y-%m-%d}T00:00:00Z"]
        assert {r["ChargePeriodEnd"] for r in day_rows} == {f"{start + DAY:%Y-%m-%d}T00:00:00Z"}
        truth = active(model_totals(DEMO, start, start + DAY))
        assert [r["ResourceId"] for r in day_rows] == sorted(truth)
        assert sums(day_rows, "ConsumedQuantity") == {
            m: Decimal(t["jobs"]) for m, t in truth.items()}
        assert sums(day_rows, "x_ModelCostCreativeUnits") == {
            m: Decimal(t["cost"]) for m, t in truth.items()}
    month = model_totals(DEMO, AUGUST.start, AUGUST.end)
    # Net: the cost less the discount (a magnitude), as upstream's consumption rows have it.
    assert sums(rows, "PricingCurrencyEffectiveCost") == {
        m: Decimal(t["cost"] - t["discount"]) for m, t in month.items()}
    assert sums(rows, "x_DiscountCreativeUnits") == {
        m: Decimal(t["discount"]) for m, t in month.items()}
    assert sums(rows, "ConsumedQuantity") == sums(rows, "PricingQuantity") == {
        m: Decimal(t["jobs"]) for m, t in month.items()}
    assert any(t["discount"] for t in month.values())  # the net differs from the gross


def test_a_refund_larger_than_the_spend_is_a_negative_usage_charge() -> None:
    bucket = UsageSnapshot(AUGUST, models={"m": ModelTotals(-5.0, 0.0, 0.0, 0.0, 0.0)})
    row, = rows_of(PeriodUsage(AUGUST, (bucket,), UsageSnapshot(AUGUST)), 2.0, "USD")
    assert row["ChargeCategory"] == "Usage"
    assert (row["PricingCurrencyEffectiveCost"], row["BilledCost"], row["ConsumedQuantity"]) \
        == ("-5", "-10", "0")
    assert row["ResourceName"] == ""  # upstream named it not: null, never the id


# -- money ---------------------------------------------------------------------------


def test_with_a_price_the_costs_are_the_creative_units_times_the_price(
        august: PeriodUsage) -> None:
    rows = rows_of(august, 0.012, "EUR")
    for row in rows:
        net = Decimal(row["PricingCurrencyEffectiveCost"])
        gross = Decimal(row["x_ModelCostCreativeUnits"])
        assert Decimal(row["BilledCost"]) == Decimal(row["EffectiveCost"]) == \
            net * Decimal("0.012")
        assert Decimal(row["ListCost"]) == Decimal(row["ContractedCost"]) == \
            gross * Decimal("0.012")
        assert (row["BillingCurrency"], row["x_CreativeUnitPrice"]) == ("EUR", "0.012")
    assert any(r["ListCost"] != r["EffectiveCost"] for r in rows)  # discounts show


def test_without_a_price_the_money_columns_are_0_in_the_configured_currency(
        august: PeriodUsage) -> None:
    for currency, expected in ((None, "USD"), ("CHF", "CHF")):
        rows = rows_of(august, None, currency)
        for row in rows:
            assert [row[c] for c in ("BilledCost", "EffectiveCost", "ListCost",
                                     "ContractedCost")] == ["0"] * 4
            assert (row["BillingCurrency"], row["x_CreativeUnitPrice"]) == (expected, "")
        assert sum(Decimal(r["PricingCurrencyEffectiveCost"]) for r in rows) > 0


# -- accounts ------------------------------------------------------------------------


def test_the_billing_account_is_the_one_given_and_the_sub_account_a_lone_project(
        august: PeriodUsage) -> None:
    one = list(focus_rows(account(project_ids=("proj_a",)), "team_x", august, None, None))
    assert {(r["BillingAccountId"], r["BillingAccountName"]) for r in one} == {
        ("team_x", "studio")}
    assert {(r["SubAccountId"], r["SubAccountName"]) for r in one} == {("proj_a", "proj_a")}
    # Without a team, the lead passes the account's name.
    alone = list(focus_rows(account(), "studio", august, None, None))
    assert {r["BillingAccountId"] for r in alone} == {"studio"}
    for projects in ((), ("proj_a", "proj_b")):
        rows = rows_of(august, project_ids=projects)
        assert {(r["SubAccountId"], r["SubAccountName"]) for r in rows} == {("", "")}


def test_a_billing_period_starting_mid_day_keeps_its_bounds_and_its_sums() -> None:
    period = PeriodWindow(datetime(2026, 8, 3, 14, 37, tzinfo=timezone.utc),
                          datetime(2026, 9, 3, 14, 37, tzinfo=timezone.utc))
    rows = rows_of(demo_usage(period), 0.02, "USD")
    check_cells(rows, period)
    assert {r["BillingPeriodStart"] for r in rows} == {"2026-08-03T14:37:00Z"}
    windows = sorted({(moment(r["ChargePeriodStart"]), moment(r["ChargePeriodEnd"]))
                      for r in rows})
    # Contiguous charge periods from the period's start to its end, none over a day.
    assert windows[0][0] == period.start and windows[-1][1] == period.end
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:], strict=False))
    truth = model_totals(DEMO, period.start, period.end)
    assert sums(rows, "PricingCurrencyEffectiveCost") == {
        m: Decimal(t["cost"] - t["discount"]) for m, t in truth.items()}
    assert sums(rows, "ConsumedQuantity") == {m: Decimal(t["jobs"]) for m, t in truth.items()}


# -- the file ------------------------------------------------------------------------


def test_the_csv_round_trips_with_the_header_once_in_order(tmp_path: Path,
                                                           august: PeriodUsage) -> None:
    september = PeriodWindow(AUGUST.end, datetime(2026, 10, 1, tzinfo=timezone.utc))
    first, second = rows_of(august, 0.012, "EUR"), rows_of(demo_usage(september), 0.012, "EUR")
    path = tmp_path / "focus.csv"
    writer = FocusWriter(str(path), io.BytesIO())
    assert writer.add(first) == len(first)
    assert writer.add(iter(second)) == len(second)
    assert not path.exists()  # nothing before close
    summary = writer.close()
    assert summary.rows == len(first) + len(second)
    assert summary.bytes == path.stat().st_size
    with path.open(encoding="utf-8", newline="") as data:
        reader = csv.DictReader(data)
        read = list(reader)
    assert reader.fieldnames == list(FOCUS_COLUMNS)
    assert read == first + second
    assert path.read_bytes().count(b"BilledCost,") == 1
    assert list(tmp_path.iterdir()) == [path]


def test_to_stdout_the_same_bytes(tmp_path: Path, august: PeriodUsage) -> None:
    rows = rows_of(august)
    stdout = io.BytesIO()
    to_stdout = FocusWriter("-", stdout)
    to_stdout.add(rows)
    assert to_stdout.close().bytes == len(stdout.getvalue())
    to_file = FocusWriter(str(tmp_path / "f.csv"), io.BytesIO())
    to_file.add(rows)
    to_file.close()
    assert stdout.getvalue() == (tmp_path / "f.csv").read_bytes()
    assert list(tmp_path.iterdir()) == [tmp_path / "f.csv"]


def test_a_header_alone_when_there_is_no_activity(tmp_path: Path) -> None:
    # A model whose series exists but sums to nothing (a bucket's zero points).
    idle = UsageSnapshot(AUGUST, models={"m": ModelTotals(0.0, 0.0, 0.0, 0.0, 0.0)})
    empty = PeriodUsage(AUGUST, (UsageSnapshot(AUGUST), idle), UsageSnapshot(AUGUST))
    writer = FocusWriter(str(tmp_path / "f.csv"), io.BytesIO())
    assert writer.add(focus_rows(account(), "studio", empty, None, None)) == 0
    writer.close()
    assert (tmp_path / "f.csv").read_bytes() == ",".join(FOCUS_COLUMNS).encode() + b"\r\n"


def test_no_file_unless_close_completes(tmp_path: Path, august: PeriodUsage,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "focus.csv"
    rows = rows_of(august)

    def interrupted_run() -> None:
        writer = FocusWriter(str(path), io.BytesIO())
        writer.add(rows)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_run()
    assert not path.exists()
    # A file failing on its way to the disk leaves the one before untouched, and no other.
    path.write_text("before\n", encoding="utf-8")
    writer = FocusWriter(str(path), io.BytesIO())
    writer.add(rows)

    def no_room(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("exporter.backfill.output.os.fsync", no_room)
    with pytest.raises(OSError):
        writer.close()
    assert path.read_text(encoding="utf-8") == "before\n"
    assert list(tmp_path.iterdir()) == [path]


def test_a_row_without_every_column_is_refused_and_nothing_of_its_batch_kept(
        tmp_path: Path, august: PeriodUsage) -> None:
    good = rows_of(august)[:2]
    bad = {**good[0], "Tags": "{}"}
    short = {k: v for k, v in good[0].items() if k != "ChargeClass"}
    writer = FocusWriter(str(tmp_path / "f.csv"), io.BytesIO())
    for wrong in (bad, short):
        with pytest.raises(ValueError, match="FOCUS columns"):
            writer.add([good[1], wrong])
    writer.add(good)
    assert writer.close().rows == 2
    with pytest.raises(ValueError):
        writer.add(good)
