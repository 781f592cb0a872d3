"""Past periods as timestamped series: the live exposition, replayed bucket by bucket.

One upstream response for a whole past period holds its points bucket by
bucket (daily for a month). Cut into those buckets and added up again in time
order, it gives what ``/metrics`` would have served at the end of each bucket:
the period-to-date sums, passed through the same ledger (caps, guard) and the
same collector as the live exporter, so names, types, labels and ``_created``
are the live ones.

    scenario_model_cost_creative_units_total{account="a",job="x",model_id="m"} 210.5 1759363200.0

Timestamps: the value of a period-to-date counter at time *t* is the sum of
the buckets that ended by *t*, so a bucket's sample is stamped at the bucket's
end; the last bucket of a period ends where the next period starts (and the
counter resets), so its sample is stamped one millisecond earlier.

``consumption`` (Creative Units per user) is a whole-window figure upstream,
not a series of points: it is only known for the whole period, and is written
in the period's last sample only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.samples import Sample

from exporter.core.account import AccountConfig
from exporter.core.durations import parse_duration
from exporter.core.ledger import PeriodLedger
from exporter.core.period import PeriodWindow, parse_iso
from exporter.core.values import AccountView, UsageSnapshot
from exporter.metrics.business import CollectorOptions
from exporter.metrics.collect import AccountsCollector
from exporter.upstream.schema import UsageResponse
from exporter.upstream.summing import merge, summarize

DAY_SECONDS = 86400.0
# The sections whose rows hold points in time buckets (consumption is a window figure).
BUCKETED = ("usages", "model_usages", "asset_usages", "nsfw_usages", "quality_gate_usages")
# The last sample of a period, stamped before the next period starts.
LAST_SAMPLE_OFFSET_SECONDS = 0.001


@dataclass(frozen=True)
class PeriodUsage:
    """What upstream says of one past period: sums per bucket, and per user for it all."""

    window: PeriodWindow
    buckets: tuple[UsageSnapshot, ...]  # each summed over its own bucket, in time order
    users: UsageSnapshot  # consumption: a whole-window figure upstream
    # Points and consumption rows upstream sent: 0 when it has no data for the period.
    points: int = 0


def bucket_seconds(response: UsageResponse) -> float:
    """The bucket size of a response: its ``granularity``, else the closest points, else a day."""
    for row in response.usages:
        if granularity := row.get("granularity"):
            try:
                seconds = parse_duration(granularity)
            except ValueError:
                continue
            if seconds > 0:
                return seconds
    times = sorted({moment for moment in map(_point_time, _all_points(response))
                    if moment is not None})
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    return min(gaps) if gaps else DAY_SECONDS


def _all_points(response: UsageResponse) -> Iterator[Mapping[str, object]]:
    for name in BUCKETED:
        for row in getattr(response, name):
            yield from row.get("points", ())


def _point_time(point: Mapping[str, object]) -> datetime | None:
    text = point.get("time")
    if not isinstance(text, str):
        return None
    try:
        return parse_iso(text)
    except ValueError:
        return None


def split_into_buckets(response: UsageResponse, window: PeriodWindow) -> PeriodUsage:
    """Sum *response* (upstream's answer for *window*) bucket by bucket.

    Buckets are laid from the window's start at the response's granularity. A
    point is added to the bucket its ``time`` (the bucket's start) falls in;
    one that starts before the window (upstream aligns buckets on its own grid)
    to the first, one without a readable time to the last, so that the
    period's total stays exactly upstream's.
    """
    step = bucket_seconds(response)
    count = max(1, math.ceil(window.seconds / step))
    edges = [window.start + timedelta(seconds=step * k) for k in range(count)] + [window.end]

    def index(point: Mapping[str, object]) -> int:
        moment = _point_time(point)
        if moment is None:
            return count - 1
        k = math.floor((moment - window.start).total_seconds() / step)
        return min(max(k, 0), count - 1)

    sections: dict[str, list[list[object]]] = {}
    points_seen = len(response.consumption)
    for name in BUCKETED:
        per_bucket: list[list[object]] = [[] for _ in range(count)]
        for row in getattr(response, name):
            points: list[list[object]] = [[] for _ in range(count)]
            for point in row.get("points", ()):
                points[index(point)].append(point)
                points_seen += 1
            for k in range(count):
                # Every row in the first bucket: its series exists from the start.
                if points[k] or k == 0:
                    per_bucket[k].append({**row, "points": tuple(points[k])})
        sections[name] = per_bucket
    buckets = tuple(
        summarize(UsageResponse.model_construct(
            None, consumption=[], entities=response.entities,
            **{name: sections[name][k] for name in BUCKETED}),
            PeriodWindow(edges[k], edges[k + 1]))
        for k in range(count))
    users = summarize(UsageResponse.model_construct(consumption=response.consumption,
                                                    entities=response.entities), window)
    return PeriodUsage(window, buckets, users, points_seen)


def join_pieces(window: PeriodWindow, pieces: Sequence[PeriodUsage]) -> PeriodUsage:
    """One period from the pieces it was fetched in (adjacent windows, in time order)."""
    users = pieces[0].users
    for piece in pieces[1:]:
        users = merge(users, piece.users)
    return PeriodUsage(window, tuple(b for piece in pieces for b in piece.buckets), users,
                       sum(piece.points for piece in pieces))


def period_to_date(usage: PeriodUsage) -> Iterator[UsageSnapshot]:
    """What the live exporter would have fetched at the end of each bucket of the period."""
    running: UsageSnapshot | None = None
    last = len(usage.buckets) - 1
    for k, bucket in enumerate(usage.buckets):
        running = bucket if running is None else merge(running, bucket)
        yield merge(running, usage.users) if k == last else running


def sample_time(snapshot: UsageSnapshot, period: PeriodWindow) -> float:
    """When a period-to-date snapshot is stamped: its end, or just before the next period."""
    end = snapshot.window.end.timestamp()
    if snapshot.window.end >= period.end:
        return period.end.timestamp() - LAST_SAMPLE_OFFSET_SECONDS
    return end


class SeriesWriter:
    """Timestamped families of one account, period after period, through its ledger."""

    def __init__(self, account: AccountConfig, options: CollectorOptions,
                 target_labels: Mapping[str, str], max_models: int, max_users: int) -> None:
        self._account = account
        self._options = options
        self._labels = dict(target_labels)
        self._ledger = PeriodLedger(max_models, max_users)

    def period_families(self, usage: PeriodUsage) -> list[Metric]:
        """The families of one period, every sample stamped (see the module docstring)."""
        families: dict[str, Metric] = {}
        for snapshot in period_to_date(usage):
            outcome = self._ledger.apply(snapshot)
            view = AccountView(self._account, snapshot=outcome.snapshot,
                               folded=outcome.folded, up=True, attempted=True)
            stamp = sample_time(snapshot, usage.window)
            # The business series only: the exporter's own describe a running process,
            # which did not exist then.
            for family in AccountsCollector([view], snapshot.window.end.timestamp(),
                                            self._options).collect():
                into = families.get(family.name)
                if into is None:
                    into = families[family.name] = Metric(family.name, family.documentation,
                                                          family.type, family.unit)
                into.samples.extend(
                    Sample(s.name, {**s.labels, **self._labels}, s.value, stamp)
                    for s in family.samples)
        for family in families.values():
            family.samples = series_together(family.samples)
        return list(families.values())


def series_together(samples: Iterable[Sample]) -> list[Sample]:
    """Samples grouped by label set, each group in the order given (time order).

    OpenMetrics wants all points of a series (a counter's ``_total`` and
    ``_created`` are one) one after the other, in time order.
    """
    groups: dict[tuple[tuple[str, str], ...], list[Sample]] = {}
    for sample in samples:
        groups.setdefault(tuple(sorted(sample.labels.items())), []).append(sample)
    return [sample for group in groups.values() for sample in group]


def render(families: Iterable[Metric]) -> bytes:
    """OpenMetrics text of *families*, ``# EOF`` included: what promtool reads."""
    listed = list(families)
    # The encoder only asks its registry for collect().
    text: bytes = generate_latest(  # type: ignore[no-untyped-call]
        SimpleNamespace(collect=lambda: listed))
    return text
