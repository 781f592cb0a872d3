"""The files of a backfill: one OpenMetrics file per finished period, merged at the end.

OpenMetrics lets a metric family appear once per file, its samples in time
order per series. Each period is rendered as a file of its own (valid on its
own, ``# EOF`` included) and kept until the run completes; the final file takes
every family once, with the samples of each period after the other, periods in
time order, so each series' samples stay in time order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from exporter.backfill.command import BackfillOptions
from exporter.config.settings import Settings
from exporter.core.errors import ConfigError
from exporter.core.period import PeriodWindow

log = logging.getLogger("exporter.backfill")

PART_SUFFIX = ".om"
_FINGERPRINT = "settings.sha256"
_EOF = b"# EOF\n"


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file that appears at *path* whole when the block ends, or not at all.

    Written next to *path* under a hidden name (``open(..., "xb")`` keeps the
    umask's permissions, where a NamedTemporaryFile would be private).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("xb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def fingerprint(settings: Settings, options: BackfillOptions) -> str:
    """What shapes a period's file: parts written under other settings are not reused."""
    shape = {
        "format": 1, "api_url": settings.api_url, "period": settings.period,
        "anchor_day": settings.period_anchor_day, "labels": options.labels,
        "max_models": settings.max_models, "max_users": settings.max_users,
        "user_identity": settings.user_identity,
        "accounts": {a.name: [a.project_ids, a.budget_creative_units]
                     for a in settings.accounts},
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


class PartStore:
    """Finished periods on disk, one valid OpenMetrics file each: a re-run skips them."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            stamp = directory / _FINGERPRINT
            if stamp.exists() and stamp.read_text(encoding="ascii").strip() != fingerprint:
                stale = list(directory.glob("*" + PART_SUFFIX))
                log.warning("settings changed since the kept periods were written: "
                            "fetching them again", extra={"fields": {
                                "parts": str(directory), "discarded": len(stale)}})
                for path in stale:
                    path.unlink()
            with atomic_file(stamp) as out:
                out.write(fingerprint.encode("ascii"))
        except OSError as exc:
            raise ConfigError(f"--output: cannot write {directory}: "
                              f"{exc.strerror or exc}") from None

    def _path(self, account: str, window: PeriodWindow) -> Path:
        # Account names are [A-Za-z0-9_.-]: safe as file names.
        return self.directory / f"{window.start:%Y-%m-%dT%H}_{account}{PART_SUFFIX}"

    def has(self, account: str, window: PeriodWindow) -> bool:
        return self._path(account, window).exists()

    def put(self, account: str, window: PeriodWindow, data: bytes) -> None:
        with atomic_file(self._path(account, window)) as out:
            out.write(data)

    def paths(self) -> list[Path]:
        """Every finished period, in time order (the names start with the period start)."""
        return sorted(self.directory.glob("*" + PART_SUFFIX))

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass(frozen=True)
class Summary:
    """What the final file holds."""

    series: int
    samples: int
    bytes: int
    first: str  # ISO 8601 time of the earliest sample, "" when there is none
    last: str


@dataclass
class _Section:
    header: bytes
    slices: list[tuple[Path, int, int]]  # samples of the family in each part


def _sections(path: Path, into: dict[str, _Section]) -> None:
    """Record where each family's header and samples are in the part at *path*."""
    data = path.read_bytes()
    blocks: list[tuple[str, int, int, int]] = []  # name, header start, samples start, end
    offset = 0
    for line in data.splitlines(keepends=True):
        end = offset + len(line)
        if line == _EOF:
            break
        if line.startswith(b"# HELP "):
            blocks.append((line.split(b" ", 3)[2].decode(), offset, end, end))
        elif line.startswith(b"# ") and blocks and blocks[-1][2] == offset:
            blocks[-1] = (blocks[-1][0], blocks[-1][1], end, end)  # TYPE, UNIT: the header
        elif blocks:
            blocks[-1] = (*blocks[-1][:3], end)
        offset = end
    for name, header, start, stop in blocks:
        section = into.setdefault(name, _Section(data[header:start], []))
        if stop > start:
            section.slices.append((path, start, stop))


def _write(sections: dict[str, _Section], out: BinaryIO) -> Summary:
    series: set[bytes] = set()
    samples = written = 0
    first = last = None
    for section in sections.values():
        # The points of one series from every part, together: OpenMetrics wants
        # them so ("_total" and "_created" of a label set are one series here).
        groups: dict[bytes, list[bytes]] = {}
        for path, start, end in section.slices:
            with path.open("rb") as part:
                part.seek(start)
                chunk = part.read(end - start)
            for line in chunk.splitlines(keepends=True):
                name_and_labels, _value, stamp = line.rsplit(b" ", 2)
                brace = name_and_labels.find(b"{")
                groups.setdefault(name_and_labels[brace:] if brace >= 0 else b"",
                                  []).append(line)
                series.add(name_and_labels)
                moment = float(stamp)
                first = moment if first is None else min(first, moment)
                last = moment if last is None else max(last, moment)
        out.write(section.header)
        written += len(section.header)
        for lines in groups.values():
            samples += len(lines)
            for line in lines:
                out.write(line)
                written += len(line)
    out.write(_EOF)
    return Summary(len(series), samples, written + len(_EOF), _iso(first), _iso(last))


def _iso(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def merge_parts(parts: list[Path], output: str, stdout: BinaryIO) -> Summary:
    """Write the parts as one OpenMetrics file to *output* (``-``: *stdout*), atomically."""
    sections: dict[str, _Section] = {}
    for path in parts:
        _sections(path, sections)
    if output == "-":
        summary = _write(sections, stdout)
        stdout.flush()
        return summary
    with atomic_file(Path(output)) as out:
        return _write(sections, out)
