"""The contract price of a Creative Unit: set for every account, or per account in the
file, validated where it is given, and served as scenario_creative_unit_price."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from exporter.config.load import build_settings
from exporter.core.account import AccountConfig
from exporter.core.errors import ConfigError
from exporter.core.values import AccountView
from exporter.metrics.business import CollectorOptions, business_families

CREDS = {"SCENARIO_API_KEY": "k", "SCENARIO_API_SECRET": "s"}


def prices(accounts: Sequence[AccountConfig]) -> dict[str, tuple[float | None, str | None]]:
    return {a.name: (a.price_per_creative_unit, a.price_currency) for a in accounts}


def test_without_a_price_no_account_has_one() -> None:
    assert prices(build_settings({}, CREDS).accounts) == {"default": (None, None)}


def test_the_flag_prices_the_single_account_in_dollars_by_default() -> None:
    assert prices(build_settings({"price.per-creative-unit": "0.0125"}, CREDS).accounts) == \
        {"default": (0.0125, "USD")}
    env = {**CREDS, "SCENARIO_EXPORTER_PRICE_PER_CREATIVE_UNIT": "0.01",
           "SCENARIO_EXPORTER_PRICE_CURRENCY": "EUR"}
    assert prices(build_settings({}, env).accounts) == {"default": (0.01, "EUR")}


def test_an_account_of_the_file_keeps_its_own_price(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("price: {per-creative-unit: 0.02, currency: EUR}\naccounts:\n"
                      "  - {name: a, api_key: k, api_secret: s}\n"
                      "  - {name: b, api_key: k, api_secret: s, price_per_creative_unit: 0.5}\n"
                      "  - {name: c, api_key: k, api_secret: s, price_per_creative_unit: 3,\n"
                      "     price_currency: JPY}\n")
    assert prices(build_settings({}, {}, config).accounts) == {
        "a": (0.02, "EUR"), "b": (0.5, "EUR"), "c": (3.0, "JPY")}


@pytest.mark.parametrize(("flags", "message"), [
    ({"price.per-creative-unit": "0"}, r"^--price.per-creative-unit: .*greater than 0"),
    ({"price.per-creative-unit": "nan"}, r"^--price.per-creative-unit: "),
    ({"price.per-creative-unit": "ten"}, r"^--price.per-creative-unit: "),
    ({"price.currency": "dollars"}, r"^--price.currency: "),
])
def test_a_bad_price_names_its_setting(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_settings(flags, CREDS)


def test_a_bad_price_of_an_account_names_the_account(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("accounts:\n  - {name: a, api_key: k, api_secret: s, "
                      "price_currency: euro}\n")
    with pytest.raises(ConfigError, match=r"accounts\[0\] .*price_currency"):
        build_settings({}, {}, config)


def test_the_price_is_served_with_its_currency() -> None:
    settings = build_settings({"price.per-creative-unit": "0.0125", "price.currency": "GBP"},
                              CREDS)
    families = {f.name: f for f in business_families(
        [AccountView(settings.accounts[0])], 0.0, CollectorOptions())}
    (sample,) = families["scenario_creative_unit_price"].samples
    assert (sample.labels, sample.value) == ({"account": "default", "currency": "GBP"}, 0.0125)
    unpriced = build_settings({}, CREDS).accounts[0]
    families = {f.name: f for f in business_families([AccountView(unpriced)], 0.0,
                                                     CollectorOptions())}
    assert families["scenario_creative_unit_price"].samples == []
