"""What the backfill's tests share: two accounts with one demo key, the moment a run
happens, the target labels of its series, aware UTC datetimes in one call, the demo
account as an upstream transport with injected faults, a run through the command
line's exit-code policy, and the series of an OpenMetrics text."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cramjam
import httpx

from exporter.backfill.command import BackfillOptions
from exporter.backfill.prompb import WriteRequest
from exporter.backfill.run import run_backfill
from exporter.backfill.sinks import seconds
from exporter.cli.exit import run_program
from exporter.config.load import build_settings
from exporter.config.settings import Settings
from exporter.core.period import PeriodWindow, next_period_start, parse_iso, period_start
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import demo_transport
from testkit.clock import FakeClock
from testkit.exposition import families

KEY, SECRET = "key-backfill", "secret-backfill-value"
NOW = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)  # August: 111 days back
LABELS = {"job": "scenario-exporter", "instance": "exporter:10097"}


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=timezone.utc)


def past_months(count: int, now: datetime | None = None) -> list[PeriodWindow]:
    """The *count* whole calendar months before the current one (of *now*, else the
    wall clock): what ``backfill --period=month --periods=COUNT`` writes."""
    first = current = period_start(now or datetime.now(timezone.utc))
    for _ in range(count):
        first = period_start(first - timedelta(days=1))
    windows = []
    while first < current:
        windows.append(PeriodWindow(first, next_period_start(first)))
        first = windows[-1].end
    return windows


def two_accounts(tmp_path: Path, **flags: str) -> Settings:
    """Accounts ``studio`` (with a budget) and ``mobile``, both with KEY and SECRET, written
    as a config file in *tmp_path*; *flags* as on the command line (calendar months unless
    they say ``period``)."""
    flags = {"period": "month", **flags}
    config = tmp_path / "accounts.yml"
    config.write_text(f"""\
accounts:
  - name: studio
    api_key: {KEY}
    api_secret: {SECRET}
    budget_creative_units: 50000
  - name: mobile
    api_key: {KEY}
    api_secret: {SECRET}
""", encoding="utf-8")
    return build_settings(flags, {}, config)


class Upstream:
    """The demo account as a transport, with a log of the windows asked and injected faults."""

    def __init__(self, account: DemoAccount | None = None,
                 fault: Callable[[datetime, datetime], httpx.Response | None] | None = None
                 ) -> None:
        self.account = account or DemoAccount(models=5, users=3, api_keys=1)
        self.inner = demo_transport(self.account, KEY, SECRET)
        self.fault = fault
        self.windows: list[tuple[datetime, datetime]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if "startDate" not in request.url.params:  # a team endpoint
            return self.inner.handle_request(request)
        window = (parse_iso(request.url.params["startDate"]),
                  parse_iso(request.url.params["endDate"]))
        self.windows.append(window)
        answer = self.fault(*window) if self.fault else None
        return answer if answer is not None else self.inner.handle_request(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


def backfill(settings: Settings, upstream: Upstream, output: Path | str | None, *,
             start: date | None = date(2026, 8, 1), end: date | None = date(2026, 11, 1),
             labels: dict[str, str] | None = None, time: FakeClock | None = None,
             stdout: Any = None, stderr: Any = None, **options: Any) -> int:
    """Run the backfill of *settings* from *upstream* at NOW (or *time*), through the
    command line's exit-code policy; *options*: more of :class:`BackfillOptions`, and
    ``push_transport`` for the remote-write server."""
    time = time or FakeClock(NOW.timestamp())
    push_transport = options.pop("push_transport", None)
    backfill_options = BackfillOptions(
        start, end, None if output is None else str(output),
        tuple(sorted((labels if labels is not None else LABELS).items())), **options)
    stderr = stderr or io.StringIO()
    # Through the command line's exit-code policy, as `scenario-exporter backfill` runs it.
    return run_program(lambda: run_backfill(
        settings, backfill_options, upstream.transport, wall=time.wall,
        clock=time.monotonic, sleep=time.sleep, stdout=stdout, stderr=stderr,
        push_transport=push_transport), stderr)


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[float, float]]]:
    """``{(sample name, labels): [(timestamp, value), ...]}`` from an OpenMetrics text."""
    series: dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[float, float]]] = {}
    for family in families(text, openmetrics=True):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            series.setdefault(key, []).append((seconds(sample.timestamp), sample.value))
    return series


class PushReceiver:
    """A remote-write server as an httpx transport: what it accepted, decoded, and the
    answers it gives (*answer* of the call's number from 0, else 204)."""

    def __init__(self, answer: Callable[[int], httpx.Response | None] | None = None) -> None:
        self.answer = answer
        self.calls = 0
        self.requests: list[list[tuple[dict[str, str], list[tuple[int, float]]]]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        refused = self.answer(self.calls) if self.answer else None
        self.calls += 1
        if refused is not None:
            return refused
        message = WriteRequest.FromString(
            bytes(cramjam.snappy.decompress_raw(request.content)))
        self.requests.append([({label.name: label.value for label in series.labels},
                               [(sample.timestamp, sample.value) for sample in series.samples])
                              for series in message.timeseries])
        return httpx.Response(204)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def series(self) -> dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[float, float]]]:
        """Every point pushed, keyed as :func:`parse` keys a file (seconds, value)."""
        points: dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[float, float]]] = {}
        for request in self.requests:
            for labels, samples in request:
                rest = {k: v for k, v in labels.items() if k != "__name__"}
                points.setdefault((labels["__name__"], frozenset(rest.items())), []).extend(
                    (stamp / 1000, value) for stamp, value in samples)
        return points
