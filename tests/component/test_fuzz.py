"""Fuzzing the path from upstream bytes to ``/metrics`` with hypothesis.

Random but schema-shaped ``GET /v1/usages`` bodies (every section of
UPSTREAM.md), drifted the ways upstream drifts (unknown enum values, extra
fields and sections, nulls and missing keys, numbers as strings, huge and tiny
numbers, unicode and control characters in ids and names, duplicate ids), and
hostile ones (wrong types, non-numeric numbers, NaN, lone surrogates, invalid
UTF-8, truncated JSON), go as JSON bytes through
models -> summarize -> ledger -> view -> renderer, in a short sequence of
refreshes of one period. Properties:

* tolerated drift is accepted (only a sum overflowing float range may make it
  invalid); anything else fails only with the documented errors
  (``ValidationError``, ``InvalidResponse``), which the client turns into
  ``UpstreamError(reason="invalid_response")``;
* all four renderings (text, OpenMetrics, each with and without gzip) parse
  with prometheus_client's parsers and give back exactly the served label
  values and numbers; counters are finite and non-negative (each refresh is
  served as upstream sums it: a downward revision is served, not hidden);
* the text exposition passes ``promtool check metrics`` (checked in batches
  at the end: one promtool process per example would dominate the run time).

The example budget is ``FUZZ_EXAMPLES`` (default 400), derandomized in CI.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import json
import math
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.samples import Sample
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.alias_generators import to_camel

from exporter.core.account import AccountConfig
from exporter.core.errors import InvalidResponse, UpstreamError
from exporter.core.ledger import PeriodLedger
from exporter.core.period import PeriodWindow
from exporter.core.values import AccountView, Totals, UsageSnapshot
from exporter.metrics.business import COUNTERS, CollectorOptions
from exporter.metrics.exposition import Exposition
from exporter.metrics.own import Telemetry
from exporter.upstream import schema
from exporter.upstream.client import UsageClient
from exporter.upstream.demo import ASSET_KINDS, NSFW_LABELS, USAGE_NAMES
from exporter.upstream.pieces import fetch_in_pieces
from exporter.upstream.schema import UsageResponse
from exporter.upstream.summing import summarize
from testkit.repo import IN_CI
from testkit.tools import require_tool

pytestmark = pytest.mark.slow

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
ACCOUNT = AccountConfig(name="fuzz", api_key="fuzz-key", api_secret=SecretStr("fuzz-secret"))
BROKEN = AccountConfig(name="broken", api_key="broken-key", api_secret=SecretStr("fuzz-secret"))
PERIOD_START = datetime(2026, 11, 1, tzinfo=timezone.utc)
FIRST_END = datetime(2026, 11, 3, 12, tzinfo=timezone.utc)
# Up to 4 rows x 4 points add into the sums of one section (ids folded into
# __other__ included): below this magnitude each, no sum can overflow float range,
# so a tolerated body must be accepted.
SAFE_MAGNITUDE = 5e306

# -- strategies ---------------------------------------------------------------

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
                               "apiKey": number_field}))})),
    "modelUsages": rows(record({
        "modelId": id_field,
        "points": rows(record({"time": time_field, "cost": number_field,
                               "discount": number_field, "apiKeyCost": number_field,
                               "apiKeyDiscount": number_field, "jobs": number_field}))})),
    "assetUsages": rows(record({"kind": id_field, "points": rows(_count_point)})),
    "nsfwUsages": rows(record({"label": id_field, "points": rows(_count_point)})),
    "consumption": rows(record({"userId": id_field, "value": number_field,
                                "discount": number_field, "total": number_field})),
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

# -- the pipeline -------------------------------------------------------------


class ReplayUpstream:
    """A UsageClient whose upstream answers 200 with whatever body was set last."""

    def __init__(self) -> None:
        self.body = b"{}"
        self.codes: list[str] = []
        self.client = UsageClient(
            "http://upstream.test/v1", 5.0,
            transport=httpx.MockTransport(lambda request: httpx.Response(200, content=self.body)),
            record=lambda account, code, seconds, size: self.codes.append(code))


def _parse(body: bytes, openmetrics: bool) -> list[Any]:
    text = body.decode("utf-8")
    if openmetrics:
        assert text.endswith("# EOF\n") and text.count("\n# EOF\n") == 1
        return list(parse_om(text))  # type: ignore[no-untyped-call]
    return list(parse_text(text))


def _samples(families: list[Any], name: str, account: str) -> list[Sample]:
    return [s for f in families for s in f.samples
            if s.name == name and s.labels.get("account") == account]


def _check_exposition(families: list[Any], snapshot: UsageSnapshot, folded: Mapping[str, int],
                      openmetrics: bool, user_identity: bool) -> dict[tuple[str, str], float]:
    """Exported == served, counters valid; returns the counter values by (name, id)."""
    counters: dict[tuple[str, str], float] = {}
    created = snapshot.window.start.timestamp()
    for spec in COUNTERS:
        totals: Mapping[str, Totals] = getattr(snapshot, spec.section)
        expected = {key: max(getattr(values, spec.field), 0.0) for key, values in totals.items()}
        samples = _samples(families, spec.name + "_total", "fuzz")
        exported = {s.labels[spec.label]: s.value for s in samples}
        assert len(exported) == len(samples), f"duplicate series in {spec.name}"
        assert exported == expected, spec.name
        for key, value in exported.items():
            assert math.isfinite(value) and math.copysign(1.0, value) > 0, (spec.name, key)
            counters[(spec.name, key)] = value
        stamps = {s.labels[spec.label]: s.value
                  for s in _samples(families, spec.name + "_created", "fuzz")}
        assert stamps == ({key: created for key in expected} if openmetrics else {})
    names = {(s.labels["model_id"], s.labels["model_name"])
             for s in _samples(families, "scenario_model_info", "fuzz")}
    assert names == set(snapshot.model_names.items())
    users = {s.labels["user_id"]: s.labels for s in _samples(families, "scenario_user_info",
                                                              "fuzz")}
    assert set(users) == set(snapshot.user_identities)
    if user_identity:
        for user_id, identity in snapshot.user_identities.items():
            assert users[user_id]["user_name"] == (identity.name or "")
            assert users[user_id]["email"] == (identity.email or "")
    assert {s.labels["section"]: s.value
            for s in _samples(families, "scenario_exporter_folded_series", "fuzz")} == \
        {section: float(folded.get(section, 0)) for section in ("models", "users")}
    up = {s.labels["account"]: s.value for f in families for s in f.samples
          if s.name == "scenario_up"}
    assert up == {"fuzz": 1.0, "broken": 0.0}
    return counters


def _exposition(views: list[AccountView], telemetry: CollectorRegistry, user_identity: bool,
                now: float) -> Exposition:
    """/metrics over fixed views at a fixed time."""
    return Exposition(lambda: views, telemetry, CollectorOptions(user_identity=user_identity),
                      wall=lambda: now)


def run_refreshes(refreshes: list[Body], caps: tuple[int, int], user_identity: bool,
                  upstream: ReplayUpstream, telemetry: CollectorRegistry,
                  texts: list[bytes], outcomes: dict[str, int]) -> None:
    """Feed *refreshes* through one period of one account and check every scrape."""
    ledger = PeriodLedger(*caps)
    broken = AccountView(BROKEN, 1, None, {}, up=False, attempted=True)
    for version, body in enumerate(refreshes, start=1):
        window = PeriodWindow(PERIOD_START, FIRST_END + timedelta(hours=version))
        error: Exception | None = None
        try:
            snapshot = summarize(UsageResponse.model_validate_json(body.data), window)
        except (ValidationError, InvalidResponse) as exc:
            error = exc
        upstream.body = body.data
        if error is not None:
            outcomes["rejected"] += 1
            assert not (body.tolerated and isinstance(error, ValidationError)), error
            assert not (body.tolerated and not body.huge), error
            with pytest.raises(UpstreamError) as failed:
                upstream.client.fetch_window(ACCOUNT, window)
            assert failed.value.reason == "invalid_response"
            assert upstream.codes[-1] == "invalid_response"
            continue  # a failed refresh leaves the served data as it was
        outcomes["accepted"] += 1
        fetched = upstream.client.fetch_window(ACCOUNT, window)
        assert fetched.snapshot == snapshot and upstream.codes[-1] == "200"

        result = ledger.apply(snapshot)
        view = AccountView(ACCOUNT, version, result.snapshot, result.folded, up=True,
                           attempted=True)
        exposition = _exposition([view, broken], telemetry, user_identity,
                                 now=window.end.timestamp() + 60)
        for accept in (None, OPENMETRICS):
            headers, plain = exposition.respond(accept, None)
            zipped_headers, zipped = exposition.respond(accept, "gzip")
            content_type = dict(headers)["Content-Type"]
            assert dict(zipped_headers)["Content-Type"] == content_type
            assert gzip.decompress(zipped) == plain
            openmetrics = accept is not None
            assert content_type.startswith(
                "application/openmetrics-text" if openmetrics else "text/plain")
            _check_exposition(_parse(plain, openmetrics), result.snapshot,
                              result.folded, openmetrics, user_identity)
            if not openmetrics:
                texts.append(plain)


# Regressions found by this fuzzer, kept as explicit examples.
HUGE_INTEGER = b'{"modelUsages":[{"modelId":"m","points":[{"cost":1' + b"0" * 400 + b"}]}]}"
HUGE_NEGATIVE = b'{"consumption":[{"userId":"u","value":-1' + b"0" * 400 + b"}]}"
FOLDED_OVERFLOW = (b'{"consumption":[{"userId":"a","discount":1e+300},{"userId":null,"value":1},'
                   b'{"userId":"b","discount":1.7976931348623157e+308}]}')


@pytest.fixture(scope="module")
def upstream() -> Iterator[ReplayUpstream]:
    replay = ReplayUpstream()
    yield replay
    replay.client.close()


def test_random_upstream_bodies_never_break_the_exposition(upstream: ReplayUpstream) -> None:
    """The fuzz property over FUZZ_EXAMPLES sequences of refreshes, then promtool."""
    registry = CollectorRegistry(auto_describe=False)
    telemetry = Telemetry(registry, ["fuzz", "broken"])
    telemetry.record_request("fuzz", "200", 0.25, 1234)
    texts: list[bytes] = []
    outcomes = {"examples": 0, "accepted": 0, "rejected": 0}

    # In CI: the same examples on every run, and no example database to carry over.
    ci: dict[str, Any] = {"derandomize": True, "database": None} if IN_CI else {}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, **ci,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(refreshes=bodies, caps=st.sampled_from([(1, 1), (2, 3), (500, 1000)]),
           user_identity=st.booleans())
    # A JSON integer beyond float range crashed summarize with OverflowError
    # (an internal_error instead of invalid_response).
    @example(refreshes=[Body(HUGE_INTEGER, tolerated=True, huge=True)], caps=(500, 1000),
             user_identity=False)
    @example(refreshes=[Body(b'{"consumption":[{"userId":"u","value":2}]}', True, False),
                        Body(HUGE_NEGATIVE, tolerated=True, huge=True)],
             caps=(1, 1), user_identity=True)
    # Two finite totals folded into __other__ by a cap of 1 overflowed to a +Inf counter.
    @example(refreshes=[Body(FOLDED_OVERFLOW, tolerated=True, huge=True)], caps=(1, 1),
             user_identity=False)
    def property_holds(refreshes: list[Body], caps: tuple[int, int],
                       user_identity: bool) -> None:
        outcomes["examples"] += 1
        run_refreshes(refreshes, caps, user_identity, upstream, registry, texts, outcomes)

    property_holds()
    # Hypothesis runs the budget plus the explicit examples (more if it shrinks).
    assert outcomes["examples"] >= FUZZ_EXAMPLES
    # The generators reach both sides of the property, not only one.
    assert outcomes["accepted"] >= FUZZ_EXAMPLES // 2 and outcomes["rejected"] >= 20, outcomes
    check_with_promtool(texts)


# -- promtool, in batches -----------------------------------------------------

BATCH = 40


def _renamed(body: bytes, prefix: bytes) -> bytes:
    """*body* with every metric name prefixed, so that many bodies make one exposition.

    Safe line by line: in the text format a line is a ``# HELP``/``# TYPE``
    comment or starts with the metric name; newlines inside label values and
    help texts are escaped, so no line starts inside a value.
    """
    out = []
    for line in body.split(b"\n"):
        if line.startswith((b"# HELP ", b"# TYPE ")):
            line = line[:7] + prefix + line[7:]
        elif line:
            line = prefix + line
        out.append(line)
    return b"\n".join(out)


def check_with_promtool(texts: list[bytes]) -> None:
    """``promtool check metrics`` on every distinct text body: a few as they are, the
    rest BATCH at a time with per-body name prefixes."""
    promtool = require_tool("promtool")
    distinct = list(dict.fromkeys(texts))
    assert distinct

    def check(data: bytes, what: Callable[[], str]) -> None:
        result = subprocess.run([promtool, "check", "metrics"], input=data,
                                capture_output=True, timeout=120)
        problems = (result.stdout + result.stderr).decode(errors="replace").strip()
        assert result.returncode == 0 and not problems, f"{problems}\n{what()}"

    for body in distinct[:5]:
        check(body, lambda body=body: body.decode())  # type: ignore[misc]
    for first in range(0, len(distinct), BATCH):
        chunk = distinct[first:first + BATCH]
        merged = b"".join(_renamed(body, b"b%d_" % index) for index, body in enumerate(chunk))
        check(merged, lambda merged=merged: merged.decode())  # type: ignore[misc]


def test_split_halves_that_overflow_together_are_an_invalid_response() -> None:
    """Each half of a split window is finite, their sum is not: invalid, not +Inf."""
    def answer(request: httpx.Request) -> httpx.Response:
        start, end = (datetime.fromisoformat(request.url.params[k].replace("Z", "+00:00"))
                      for k in ("startDate", "endDate"))
        if end - start > timedelta(days=1):
            return httpx.Response(413, content=b'{"message":"Response payload size exceeded"}')
        return httpx.Response(200, content=b'{"modelUsages":[{"modelId":"m","points":'
                                           b'[{"cost":1e308}]}]}')

    codes: list[str] = []
    client = UsageClient("http://upstream.test/v1", 5.0, transport=httpx.MockTransport(answer),
                         record=lambda account, code, seconds, size: codes.append(code))
    try:
        with pytest.raises(UpstreamError) as failed:
            fetch_in_pieces(client.fetch_window, ACCOUNT,
                            PeriodWindow(PERIOD_START, FIRST_END))
    finally:
        client.close()
    assert failed.value.reason == "invalid_response"
    assert "not a finite number" in str(failed.value)
    assert codes[0] == "413" and codes.count("200") >= 2
