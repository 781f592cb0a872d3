"""Response models: tolerant of drift, strict about numbers."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from exporter.core.errors import InvalidResponse
from exporter.core.period import PeriodWindow
from exporter.upstream.schema import UNKNOWN_ID, UsageResponse
from exporter.upstream.summing import summarize
from testkit.golden import DATA

WINDOW = PeriodWindow(datetime(2026, 11, 1, tzinfo=timezone.utc),
                      datetime(2026, 11, 3, 12, tzinfo=timezone.utc))


def full_response() -> dict:
    return json.loads((DATA / "usages_full.json").read_text())


def parse(body: dict) -> UsageResponse:
    return UsageResponse.model_validate_json(json.dumps(body))


def test_full_realistic_response_sums_every_section() -> None:
    snap = summarize(parse(full_response()), WINDOW)

    assert snap.models["model_abc123"] == (309.75, 120.0, 14.75, 5.0, 62.0)
    assert snap.models["model_flux-dev"] == (1000.0, 480.5, 0.0, 0.0, 125.0)
    assert snap.models["model_quiet"] == (0.0, 0.0, 0.0, 0.0, 0.0)
    # value, apiKey, then CU: cost and API-key cost signed, discounts as magnitudes
    assert snap.usages["images-generation"] == (103.5, 37.0, 414.0, 148.0, 18.5, 5.0)
    assert snap.usages["creative-unit-cost"] == (2190.5, 1010.25, 0.0, 0.0, 0.0, 0.0)
    assert snap.usages["models-training"] == (0.0,) * 6
    assert snap.usages["upscale"] == (12.0, 12.0, 0.0, 0.0, 0.0, 0.0)
    assert snap.usages["refunds"] == (7.0, 2.0, -35.0, -10.0, 0.0, 0.0)
    assert (snap.usages["refunds"].credit, snap.usages["refunds"].credit_api_key) == (35.0, 10.0)
    # upscale's points carry no CU (an upstream older than SDK 2.4), models-training none
    assert snap.priced_usages == {"images-generation", "creative-unit-cost", "refunds"}
    assert snap.quality_gates == {"total": (62.0, 14.0), "pass": (49.0, 12.0),
                                  "warn": (6.0, 1.0), "fail": (7.0, 1.0)}
    # costDetails that is not an object (user_2), values that are not numbers: left out
    assert snap.user_actions == {"user_1": {"generation": 250.0, "quality-gate": 50.0},
                                 "user_key_ci": {"generation": 600.25}}
    assert snap.assets == {"image": (102.0, 46.0), "3d": (2.0, 0.0), "video": (0.0, 0.0)}
    assert snap.nsfw == {"explicit": (0.0, 0.0), "suggestive": (3.0, 1.0)}
    # discount magnitudes, whatever the sign upstream used
    assert snap.users == {"user_1": (300.0, 15.0), "user_2": (1009.75, 4.75),
                          "user_key_ci": (600.25, 0.0)}
    assert snap.model_names == {"model_abc123": "Hero characters",
                                "model_flux-dev": 'Flux "dev" \\ base'}
    assert snap.user_identities["user_key_ci"].is_api_key is True
    assert snap.user_identities["user_1"].name == "Ada Lovelace"
    assert snap.user_identities["user_1"].email == "ada@studio.example"


def test_unknown_fields_sections_and_enum_values_are_accepted() -> None:
    body = full_response()
    body["somethingNew"] = {"x": 1}
    body["usages"].append({"usageName": "holodeck-rendering", "granularity": "2w",
                           "points": [{"value": "5", "apiKey": "1", "confidence": 0.9}]})
    body["assetUsages"].append({"kind": "gaussian-splat", "points": [{"count": 4}]})
    body["nsfwUsages"].append({"label": "new-label", "points": [{"count": "2"}]})
    body["modelUsages"][0]["owner"] = {"team": "art"}
    snap = summarize(parse(body), WINDOW)
    assert snap.usages["holodeck-rendering"] == (5.0, 1.0, 0.0, 0.0, 0.0, 0.0)
    assert snap.assets["gaussian-splat"] == (4.0, 0.0)
    assert snap.nsfw["new-label"] == (2.0, 0.0)


def test_missing_sections_are_empty() -> None:
    snap = summarize(parse({}), WINDOW)
    assert not snap.models and not snap.usages and not snap.assets and not snap.users
    only_models = summarize(parse({"modelUsages": full_response()["modelUsages"]}), WINDOW)
    assert set(only_models.models) == {"model_abc123", "model_flux-dev", "model_quiet"}
    assert not only_models.model_names


@pytest.mark.parametrize(("section", "attribute"), [
    ("usages", "usages"), ("modelUsages", "models"), ("assetUsages", "assets"),
    ("nsfwUsages", "nsfw"), ("consumption", "users"), ("entities", "model_names")])
def test_null_sections_are_empty(section: str, attribute: str) -> None:
    body = full_response()
    body[section] = None
    snap = summarize(parse(body), WINDOW)
    assert getattr(snap, attribute) == {}
    assert snap.models if section != "modelUsages" else snap.usages  # the rest is intact


def test_nulls_inside_rows_count_as_zero_or_unknown() -> None:
    body = {
        "modelUsages": [{"modelId": None, "points": [
            {"time": None, "cost": None, "discount": None, "apiKeyCost": "2", "jobs": None}]},
            {"modelId": "m", "points": None}],
        "usages": [{"usageName": None, "points": [{"value": "1", "apiKey": None}]}],
        "consumption": [{"userId": None, "value": None, "discount": None, "total": None}],
        "entities": {"models": None, "users": [{"id": "u", "isApiKey": None}]},
    }
    snap = summarize(parse(body), WINDOW)
    assert snap.models[UNKNOWN_ID] == (0.0, 2.0, 0.0, 0.0, 0.0)
    assert snap.models["m"] == (0.0,) * 5
    assert snap.usages[UNKNOWN_ID] == (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert snap.users[UNKNOWN_ID] == (0.0, 0.0)
    assert snap.user_identities["u"].is_api_key is None


def test_numbers_as_strings_with_spaces_exponents_and_signs() -> None:
    body = {"usages": [{"usageName": "u", "points": [
        {"value": " 12 ", "apiKey": "1e1"}, {"value": "+3.5", "apiKey": ".5"},
        {"value": 7, "apiKey": 0.25}]}],
        "modelUsages": [{"modelId": 123, "points": [{"cost": "-0", "jobs": "3"}]}]}
    snap = summarize(parse(body), WINDOW)
    assert snap.usages["u"] == (22.5, 10.75, 0.0, 0.0, 0.0, 0.0)
    assert snap.models["123"].jobs == 3.0  # numeric ids become text


@pytest.mark.parametrize("bad", ["twelve", "", "12abc", "NaN", "Infinity", True, [1], {"v": 1}])
def test_non_numeric_value_makes_the_response_invalid(bad: object) -> None:
    body = full_response()
    body["usages"][0]["points"][0]["value"] = bad
    with pytest.raises(ValidationError):
        parse(body)


@pytest.mark.parametrize("field", ["cost", "discount", "apiKeyCost", "apiKeyDiscount", "jobs"])
def test_non_numeric_model_fields_are_invalid(field: str) -> None:
    body = full_response()
    body["modelUsages"][0]["points"][0][field] = "n/a"
    with pytest.raises(ValidationError):
        parse(body)


def test_numbers_too_large_for_a_float_are_invalid() -> None:
    body = {"usages": [{"usageName": "u", "points": [{"value": "1e400"}]}]}
    with pytest.raises(InvalidResponse):
        summarize(parse(body), WINDOW)


def test_json_that_is_not_an_object_is_invalid() -> None:
    for text in ("[]", "null", "42", "<html>", ""):
        with pytest.raises(ValidationError):
            UsageResponse.model_validate_json(text)


def test_wrongly_typed_section_is_invalid() -> None:
    with pytest.raises(ValidationError):
        parse({"modelUsages": {"modelId": "m"}})


def test_an_older_upstream_prices_nothing_and_a_new_one_prices_even_free_actions() -> None:
    old = summarize(parse({"usages": [{"usageName": "upscale", "points": [
        {"value": "3", "apiKey": "1"}]}]}), WINDOW)
    assert old.priced_usages == frozenset() and not old.quality_gates and not old.user_actions
    new = summarize(parse({"usages": [{"usageName": "tag-asset", "points": [
        {"value": "3", "apiKey": "1", "cost": 0}]}]}), WINDOW)
    assert new.priced_usages == {"tag-asset"}


@pytest.mark.parametrize("details", ["n/a", 12, ["generation", 3], None, {"a": "x"}])
def test_cost_details_that_are_not_an_object_of_numbers_leave_the_rest_served(
        details: object) -> None:
    body = {"consumption": [{"userId": "u", "value": 5, "discount": 0, "total": 5,
                             "costDetails": details}]}
    snap = summarize(parse(body), WINDOW)
    assert snap.users == {"u": (5.0, 0.0)} and snap.user_actions == {}


def test_an_unknown_verdict_is_counted_as_it_comes() -> None:
    body = {"qualityGateUsages": [{"verdict": "needs-review", "points": [
        {"count": 2, "countApiKey": "1"}]}, {"verdict": None, "points": None}]}
    snap = summarize(parse(body), WINDOW)
    assert snap.quality_gates == {"needs-review": (2.0, 1.0), UNKNOWN_ID: (0.0, 0.0)}
