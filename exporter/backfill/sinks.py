"""Where a backfill's periods go: an OpenMetrics file, a remote-write server, a FOCUS file.

Each finished period of an account is handed to every sink of the run, in time
order per account. A sink that can keep finished periods for the next run (the
OpenMetrics file's parts) says so with :meth:`Sink.has`; the others get every
period again when a run is repeated, which is harmless: the same samples at the
same times, the same rows.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from prometheus_client.core import Metric
from prometheus_client.samples import Timestamp

from exporter.backfill.command import BackfillOptions
from exporter.backfill.focus import FocusWriter, focus_rows
from exporter.backfill.output import PartStore, fingerprint, merge_parts
from exporter.backfill.remote_write import RemoteWriter
from exporter.backfill.replay import PeriodUsage, render
from exporter.config.settings import Settings
from exporter.core.account import AccountConfig
from exporter.core.errors import ConfigError
from exporter.core.period import PeriodWindow

log = logging.getLogger("exporter.backfill")

Series = tuple[Mapping[str, str], Sequence[tuple[float, float]]]


class Sink(Protocol):
    """One destination of the periods."""

    def has(self, account: str, window: PeriodWindow) -> bool:
        """Whether an earlier run left this period here already."""

    def put(self, account: AccountConfig, billing_account: str, usage: PeriodUsage,
            families: list[Metric]) -> None:
        """Take one period; a failure to deliver raises (the period is then missing)."""

    def finish(self, complete: bool) -> dict[str, Any]:
        """Deliver what is left; what it wrote, as summary fields. *complete*: no period
        is missing."""

    def abort(self) -> None:
        """The run was interrupted: drop what a next run could not resume from."""


class OpenMetricsSink:
    """Finished periods kept as parts next to ``--output``, merged into it at the end."""

    def __init__(self, settings: Settings, options: BackfillOptions, output: str,
                 stdout: BinaryIO | None) -> None:
        self._output = output
        self._stdout = stdout
        self.parts_dir, self.temporary = parts_directory(output)
        self._store = PartStore(self.parts_dir, fingerprint(settings, options))

    def has(self, account: str, window: PeriodWindow) -> bool:
        return self._store.has(account, window)

    def put(self, account: AccountConfig, billing_account: str, usage: PeriodUsage,
            families: list[Metric]) -> None:
        self._store.put(account.name, usage.window, render(families))

    def finish(self, complete: bool) -> dict[str, Any]:
        parts = self._store.paths()
        if not parts:
            self._drop_unless_resumable(complete)
            return {"output": self._output, "series": 0, "samples": 0}
        summary = merge_parts(parts, self._output, self._stdout or sys.stdout.buffer)
        self._drop_unless_resumable(complete)
        return {"output": self._output, "series": summary.series, "samples": summary.samples,
                "bytes": summary.bytes, "first_sample": summary.first,
                "last_sample": summary.last,
                "next": "promtool tsdb create-blocks-from openmetrics "
                        f"{self._output} DATA_DIR" if self._output != "-" else ""}

    def _drop_unless_resumable(self, complete: bool) -> None:
        """The parts stay for a run that has periods missing (which the next run fetches)."""
        if complete or self.temporary:
            self._store.remove()

    def abort(self) -> None:
        if self.temporary:
            self._store.remove()

    @property
    def resume_hint(self) -> str:
        if self.temporary:
            return "--output=- cannot resume: give a file to keep finished periods"
        return ("run the same command again: the periods already written are kept in "
                f"{self.parts_dir} and not fetched again")


class RemoteWriteSink:
    """Every period pushed as it is fetched, series after series in time order."""

    def __init__(self, writer: RemoteWriter) -> None:
        self._writer = writer

    def has(self, account: str, window: PeriodWindow) -> bool:
        return False

    def put(self, account: AccountConfig, billing_account: str, usage: PeriodUsage,
            families: list[Metric]) -> None:
        self._writer.push(series_of(families))

    def finish(self, complete: bool) -> dict[str, Any]:
        stats = self._writer.stats
        self._writer.close()
        return {"remote_write_series": stats.series, "remote_write_samples": stats.samples,
                "remote_write_requests": stats.requests, "remote_write_bytes": stats.bytes,
                "remote_write_retries": stats.retries,
                "remote_write_seconds": round(stats.seconds, 3)}

    def abort(self) -> None:
        self._writer.close()


class FocusSink:
    """FOCUS 1.2 rows (a day, an account, a model), written as one CSV at the end."""

    def __init__(self, output: str, stdout: BinaryIO | None) -> None:
        if output != "-":
            parts_directory(output)  # checks that it can be written, before any call
        self._output = output
        self._writer = FocusWriter(output, stdout or sys.stdout.buffer)
        self._rows = 0

    def has(self, account: str, window: PeriodWindow) -> bool:
        return False

    def put(self, account: AccountConfig, billing_account: str, usage: PeriodUsage,
            families: list[Metric]) -> None:
        self._rows += self._writer.add(focus_rows(
            account, billing_account, usage, account.price_per_creative_unit,
            account.price_currency))

    def finish(self, complete: bool) -> dict[str, Any]:
        self._writer.close()
        return {"output": self._output, "focus_rows": self._rows}

    def abort(self) -> None:
        pass


def series_of(families: Iterable[Metric]) -> Iterator[Series]:
    """The samples of *families* as remote-write series: labels with ``__name__``, points
    in the order given (the replay's: time order per series)."""
    for family in families:
        points: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        for sample in family.samples:
            key = (("__name__", sample.name), *sorted(sample.labels.items()))
            points.setdefault(key, []).append((seconds(sample.timestamp), sample.value))
        for key, values in points.items():
            yield dict(key), values


def seconds(timestamp: object) -> float:
    """A sample's timestamp in Unix seconds (the replay stamps floats; a parser may give a
    :class:`prometheus_client.samples.Timestamp`)."""
    if isinstance(timestamp, Timestamp):
        return timestamp.sec + timestamp.nsec / 1e9
    if isinstance(timestamp, (int, float)):
        return float(timestamp)
    raise ValueError(f"a backfilled sample without a timestamp: {timestamp!r}")


def parts_directory(output: str) -> tuple[Path, bool]:
    """Where finished periods wait; checks that *output* can be written at all."""
    if output == "-":
        return Path(tempfile.mkdtemp(prefix="scenario-backfill-")), True
    path = Path(output)
    if path.is_dir():
        raise ConfigError(f"--output: {output} is a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent or Path("."), prefix=f".{path.name}."):
            pass
    except OSError as exc:
        raise ConfigError(f"--output: cannot write {output}: {exc.strerror or exc}") from None
    return path.with_name(path.name + ".parts"), False
