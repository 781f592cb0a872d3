"""Fuzzing the path from upstream bytes to ``/metrics`` with hypothesis.

Bodies drawn by :mod:`testkit.strategies` (schema-shaped, drifted the ways
upstream drifts, or hostile) go as JSON bytes through
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

import gzip
import math
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample
from pydantic import SecretStr, ValidationError

from exporter.core.account import AccountConfig
from exporter.core.errors import InvalidResponse, UpstreamError
from exporter.core.ledger import PeriodLedger
from exporter.core.period import PeriodWindow
from exporter.core.values import AccountView, UsageSnapshot
from exporter.metrics.business import CollectorOptions
from exporter.metrics.counters import COUNTERS
from exporter.metrics.exposition import Exposition
from exporter.metrics.own import Telemetry
from exporter.upstream.client import UsageClient
from exporter.upstream.schema import UsageResponse
from exporter.upstream.summing import summarize
from testkit.exposition import families
from testkit.golden import OPENMETRICS
from testkit.repo import IN_CI
from testkit.strategies import Body, bodies
from testkit.tools import require_tool

pytestmark = pytest.mark.slow

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
ACCOUNT = AccountConfig(name="fuzz", api_key="fuzz-key", api_secret=SecretStr("fuzz-secret"))
BROKEN = AccountConfig(name="broken", api_key="broken-key", api_secret=SecretStr("fuzz-secret"))
PERIOD_START = datetime(2026, 11, 1, tzinfo=timezone.utc)
FIRST_END = datetime(2026, 11, 3, 12, tzinfo=timezone.utc)

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
    return families(text, openmetrics)


def _samples(families: list[Any], name: str, account: str) -> list[Sample]:
    return [s for f in families for s in f.samples
            if s.name == name and s.labels.get("account") == account]


def _check_exposition(families: list[Any], snapshot: UsageSnapshot, folded: Mapping[str, int],
                      openmetrics: bool, user_identity: bool
                      ) -> dict[tuple[str, tuple[str, ...]], float]:
    """Exported == served, counters valid; returns the counter values by (name, id)."""
    counters: dict[tuple[str, tuple[str, ...]], float] = {}
    created = snapshot.window.start.timestamp()
    for spec in COUNTERS:
        expected = {ids: max(value, 0.0) for ids, value in spec.values(snapshot)}
        samples = _samples(families, spec.name + "_total", "fuzz")
        exported = {tuple(s.labels[label] for label in spec.labels): s.value for s in samples}
        assert len(exported) == len(samples), f"duplicate series in {spec.name}"
        assert exported == expected, spec.name
        for key, value in exported.items():
            assert math.isfinite(value) and math.copysign(1.0, value) > 0, (spec.name, key)
            counters[(spec.name, key)] = value
        stamps = {tuple(s.labels[label] for label in spec.labels): s.value
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
