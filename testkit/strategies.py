"""Hypothesis strategies of ``GET /v1/usages`` bodies, for the fuzz tests and for
differential runs of the models (docs/performance.md).

Random but schema-shaped bodies with every section of UPSTREAM.md, drifted the
ways upstream drifts (unknown enum values, extra fields and sections, nulls and
missing keys, numbers as strings, huge and tiny numbers, unicode and control
characters in ids and names, duplicate ids): :func:`tolerated_body`, which the
exporter must accept unless a sum overflows; and hostile ones (wrong types,
non-numeric numbers, NaN, lone surrogates, invalid UTF-8, truncated JSON):
:func:`hostile_body`. :data:`bodies` draws a short sequence of refreshes of both.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from exporter.upstream import schema
from exporter.upstream.demo import ASSET_KINDS, NSFW_LABELS, USAGE_NAMES

# Up to 4 rows x 4 points add into the sums of one section (ids folded into
# __other__ included): below this magnitude each, no sum can overflow float range,
# so a tolerated body must be accepted.
SAFE_MAGNITUDE = 5e306

# Every key the models read, camelCase or snake_case (populate_by_name accepts
# both): an "extra" field must not be one of them.
_MODEL_CLASSES: tuple[type[BaseModel], ...] = (schema.UsageResponse, schema.Entities)
# Rows, entities and points are TypedDicts, aliased by the same generator.
_DICT_CLASSES: tuple[type, ...] = (
    schema.UsageRow, schema.ModelUsageRow, schema.AssetUsageRow, schema.NsfwUsageRow,
    schema.ConsumptionRow, schema.ModelEntity, schema.UserEntity,
    schema.UsagePoint, schema.ModelPoint, schema.CountPoint)
KNOWN_KEYS = frozenset(
    [k for cls in _MODEL_CLASSES for name, info in cls.model_fields.items()
     for k in (name, info.alias or name)]
    + [k for cls in _DICT_CLASSES for name in cls.__annotations__
       for k in (name, to_camel(name))])

# Pieces that break naive escaping, line splitting or bidi rendering.
NASTY = ("\n", '"', "\\", "\x00", "\r", "\t", "\x1b", "\x7f", "\x85", "\u200f", "\u202e",
         "\u2028", "\ufeff", "\uffff", "\U0010ffff", "😀", "👩‍👩‍👧", "é", "#", "{", "}", "=",
         ",", " ", "# EOF", "# TYPE x counter", "\\n", '\\"', "__other__", "unknown", "NaN",
         "+Inf", "le", "_total")
nasty_text = st.lists(st.sampled_from(NASTY), max_size=4).map("".join)
# st.text() draws any Unicode scalar value (controls included) but no surrogate.
identifier_text = st.one_of(
    st.sampled_from(USAGE_NAMES + ASSET_KINDS + NSFW_LABELS + ("", "brand-new-usage")),
    nasty_text, st.text(max_size=8))

SPECIAL_NUMBERS: tuple[int | float, ...] = (
    0, 0.0, -0.0, 1, -1, 0.5, -2.5, 1e300, -1e300, 5e-324, -5e-324, 2.2250738585072014e-308,
    1.7976931348623157e308, -1.7976931348623157e308, 2**53 + 1, 2**63, 10**30,
    10**400, -(10**400))
plain_number = st.one_of(st.sampled_from(SPECIAL_NUMBERS), st.integers(-2**63, 2**63),
                         st.floats(allow_nan=False, allow_infinity=False))

_DIGITS = "0123456789"
_OTHER_DIGITS = ("٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "०१२३४५६७८९")


@st.composite
def numeric_text(draw: st.DrawFn, value: int | float) -> str:
    """*value* written as a numeric string, in one of the spellings upstream could use."""
    text = str(value) if isinstance(value, int) else repr(value)
    style = draw(st.sampled_from(("plain", "padded", "plus", "exponent", "dots", "digits")))
    if style == "padded":
        return draw(st.sampled_from((" ", "\t", "\n", "\u3000"))) + text + " "
    if style == "plus" and not text.startswith("-"):
        return "+" + text
    if style == "exponent" and isinstance(value, float):
        return f"{value:E}"
    if style == "dots":
        if text.startswith("0.") and text.count("e") == 0:
            return text[1:]  # ".5"
        if isinstance(value, int):
            return text + "."  # "5."
    if style == "digits":
        # Unicode decimal digits match the model's \d and float() reads them alike.
        return text.translate(str.maketrans(_DIGITS, draw(st.sampled_from(_OTHER_DIGITS))))
    return text


number_field = st.one_of(st.none(), plain_number, plain_number.flatmap(numeric_text))
text_field = st.one_of(st.none(), identifier_text, st.integers())
time_field = st.one_of(st.none(), st.just("2026-11-01T00:00:00.000Z"), st.just(""),
                       st.integers(0, 2**42), identifier_text)
_json_scalar = (st.none() | st.booleans() | st.integers(-1000, 1000) | st.floats(-1e6, 1e6)
                | st.text(max_size=6))
# Nested two levels at most: deeper values cost generation time and test nothing more.
json_value = _json_scalar | st.lists(_json_scalar, max_size=3) | st.dictionaries(
    st.text(max_size=5), _json_scalar | st.lists(_json_scalar, max_size=2), max_size=3)
extra_key = st.one_of(st.sampled_from(("newField", "futureMetric", "projectId", "metadata",
                                       "", "ÿ", "__proto__")),
                      st.text(max_size=6)).filter(lambda k: k not in KNOWN_KEYS)


@dataclass(frozen=True)
class PoolId:
    """A reference to one of a document's few shared ids (duplicates across rows)."""

    index: int


_MISSING = object()
# An id: one of the document's shared ids, or its own (text, null, or drifted into a
# JSON number, which the models turn into text).
id_field = st.one_of(st.builds(PoolId, st.integers(0, 3)), st.builds(PoolId, st.integers(0, 3)),
                     st.none(), identifier_text, st.integers(),
                     st.floats(allow_nan=False, allow_infinity=False))


def record(fields: Mapping[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """An object whose keys may each be missing (one time in four), plus extra fields."""
    known = st.fixed_dictionaries({key: st.one_of(value, value, value, st.just(_MISSING))
                                   for key, value in fields.items()})
    extra: st.SearchStrategy[dict[str, Any]] = st.one_of(
        st.just({}), st.dictionaries(extra_key, json_value, min_size=1, max_size=2))
    return st.builds(lambda fields, extra: {**extra, **{k: v for k, v in fields.items()
                                                          if v is not _MISSING}},
                     known, extra)


def rows(row: st.SearchStrategy[Any], max_size: int = 4) -> st.SearchStrategy[Any]:
    """A list of rows, which upstream may also send empty or as ``null``."""
    some = st.lists(row, min_size=1, max_size=max_size)
    return st.one_of(some, some, some, st.just([]), st.none())


_count_point = record({"time": time_field, "count": number_field, "countApiKey": number_field})
# Every section of UPSTREAM.md, activity (which the exporter does not read) included.
_document = record({
    "usages": rows(record({
        "usageName": id_field,
        "granularity": st.one_of(st.sampled_from(("1m", "5m", "1h", "1d", "7d", "2h")),
                                 text_field),
        "points": rows(record({"time": time_field, "value": number_field,
                               "apiKey": number_field, "cost": number_field,
                               "discount": number_field, "apiKeyCost": number_field,
                               "apiKeyDiscount": number_field}))})),
    "modelUsages": rows(record({
        "modelId": id_field,
        "points": rows(record({"time": time_field, "cost": number_field,
                               "discount": number_field, "apiKeyCost": number_field,
                               "apiKeyDiscount": number_field, "jobs": number_field}))})),
    "assetUsages": rows(record({"kind": id_field, "points": rows(_count_point)})),
    "nsfwUsages": rows(record({"label": id_field, "points": rows(_count_point)})),
    "consumption": rows(record({
        "userId": id_field, "value": number_field, "discount": number_field,
        "total": number_field,
        # an object of CU per action, as SDK 2.4 sends it, or anything else
        "costDetails": st.one_of(st.dictionaries(identifier_text, number_field, max_size=3),
                                 json_value)})),
    "qualityGateUsages": rows(record({"verdict": id_field, "points": rows(_count_point)})),
    "activity": rows(record({
        "action": identifier_text, "time": time_field, "userId": id_field,
        "projectId": text_field, "creativeUnitsCost": number_field,
        "data": st.one_of(st.none(), record({
            "assetId": text_field, "jobId": text_field, "modelId": id_field,
            "collectionId": text_field, "isApiKey": st.booleans(),
            "byokProvider": text_field}))}), max_size=2),
    "entities": st.one_of(st.none(), record({
        "models": rows(record({"id": id_field, "name": text_field,
                               "shortDescription": text_field})),
        "users": rows(record({
            "id": id_field,
            "isApiKey": st.one_of(st.none(), st.booleans(),
                                  st.sampled_from(("true", "false", 0, 1))),
            "apiKeyId": text_field, "apiKeyStatus": text_field, "email": text_field,
            "fullName": text_field, "avatar": text_field})),
        "assets": rows(json_value, 2), "collections": rows(json_value, 2),
        "jobs": rows(json_value, 2)})),
})


def _resolve(node: Any, pool: list[Any]) -> Any:
    if isinstance(node, PoolId):
        return pool[node.index % len(pool)]
    if isinstance(node, dict):
        return {key: _resolve(value, pool) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, pool) for value in node]
    return node


@st.composite
def usage_document(draw: st.DrawFn) -> dict[str, Any]:
    """A ``GET /v1/usages`` body with every section, drifted."""
    pool = draw(st.lists(st.one_of(identifier_text, st.integers(), st.none()),
                         min_size=1, max_size=4))
    document: dict[str, Any] = _resolve(draw(_document), pool)
    return document


# What a broken or hostile upstream puts where a value should be.
junk = st.one_of(
    st.sampled_from(("abc", "", "1,5", "0x10", "NaN", "Infinity", "-inf", "1e", "--1", "½",
                     True, False, [], {}, [1], {"value": 1})),
    st.floats().filter(lambda x: not math.isfinite(x)),  # json.dumps writes NaN / Infinity
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),  # lone surrogates
    json_value).map(copy.deepcopy)  # sampled lists and dicts are shared between draws:
# without a copy, a later edit could make a document contain itself.


@dataclass(frozen=True)
class Body:
    """One upstream answer: the bytes, and whether the exporter must accept them."""

    data: bytes
    tolerated: bool  # drift only: must be accepted unless a sum overflows
    huge: bool  # holds a number big enough that a sum may overflow

    def __repr__(self) -> str:  # the bytes are what one pastes into @example
        return f"Body({self.data!r}, tolerated={self.tolerated}, huge={self.huge})"


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node[path[0]] = _replace(node[path[0]], path[1:], value)
    return node


def _magnitudes(node: Any) -> Iterator[float]:
    if isinstance(node, bool):
        return
    if isinstance(node, (int, float)):
        yield math.inf if abs(node) > 1.7976931348623157e308 else abs(float(node))
    elif isinstance(node, str):
        with contextlib.suppress(ValueError):
            yield abs(float(node))
    elif isinstance(node, dict):
        for value in node.values():
            yield from _magnitudes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _magnitudes(value)


def _encode(document: Any, ascii_only: bool) -> bytes:
    # ensure_ascii writes non-ASCII as \uXXXX escapes (surrogate pairs for emoji, and
    # lone surrogates as such); without it, lone surrogates become invalid UTF-8.
    text = json.dumps(document, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def tolerated_body(draw: st.DrawFn) -> Body:
    document = draw(usage_document())
    huge = any(m >= SAFE_MAGNITUDE for m in _magnitudes(document))
    return Body(_encode(document, draw(st.booleans())), tolerated=True, huge=huge)


@st.composite
def hostile_body(draw: st.DrawFn) -> Body:
    document: Any = draw(usage_document())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(document))))
        document = _replace(document, path, draw(junk))
    data = _encode(document, draw(st.booleans()))
    if draw(st.integers(0, 4)) == 0:
        data = data[:draw(st.integers(0, len(data)))]
    return Body(data, tolerated=False, huge=True)


bodies = st.lists(st.one_of(tolerated_body(), tolerated_body(), hostile_body()),
                  min_size=1, max_size=3)
