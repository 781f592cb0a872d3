"""Rendering ``/metrics``: business series once per refresh, live series per scrape.

The business series only change when a refresh lands (or when an account's
data crosses the staleness bound), so their exposition is rendered once per
change and format, and compressed once: a gzip stream left open on a byte
boundary (a sync flush), with the CRC-32 of its content. A scrape then renders
only the few live series (upstream counters, build info, scrape duration) and
appends them: to the cached text, or to the open gzip stream as uncompressed
("stored") deflate blocks followed by the gzip trailer, which yields one valid
gzip stream without compressing anything per scrape.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from exporter.collector import CollectorOptions, build_info, collect_accounts, is_withdrawn
from exporter.period import wall_clock
from exporter.usage import AccountView

_EOF = b"# EOF\n"
_STORED_BLOCK_MAX = 0xFFFF  # RFC 1951 3.2.4: LEN is 16 bits


def stored_blocks(data: bytes, final: bool) -> bytes:
    """*data* as uncompressed deflate blocks; the last one marked final when *final*.

    A sync flush leaves the deflate stream on a byte boundary, where stored
    blocks (RFC 1951 3.2.4) can follow: a header byte (BFINAL on the last),
    LEN, its one's complement, the bytes.
    """
    chunks = [data[i:i + _STORED_BLOCK_MAX]
              for i in range(0, len(data), _STORED_BLOCK_MAX)] or [b""]
    parts = []
    for index, chunk in enumerate(chunks):
        last = 1 if final and index == len(chunks) - 1 else 0
        parts.append(struct.pack("<BHH", last, len(chunk), len(chunk) ^ 0xFFFF))
        parts.append(chunk)
    return b"".join(parts)


def finish_gzip(prefix: bytes, crc: int, size: int, tail: bytes) -> bytes:
    """Close a sync-flushed gzip stream of *size* bytes (CRC-32 *crc*) with *tail*.

    The tail goes in stored blocks; the gzip trailer (RFC 1952) is the CRC-32
    and length modulo 2^32 of everything.
    """
    return b"".join((prefix, stored_blocks(tail, final=True),
                     struct.pack("<II", zlib.crc32(tail, crc), (size + len(tail)) & 0xFFFFFFFF)))


@dataclass(frozen=True)
class _WithOwn:
    """A business rendering followed by the exporter's series, in both encodings."""

    business: object  # the _Rendered they follow
    own: bytes
    text: bytes  # business, then own
    prefix: bytes  # the business's open gzip stream, then the stored blocks of own
    crc: int  # of text


class _Families:
    """The minimal registry interface the encoders need: ``collect()``."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


@dataclass(frozen=True)
class _Rendered:
    key: tuple[object, ...]
    body: bytes  # without the OpenMetrics "# EOF" line
    gzip_prefix: bytes  # body compressed, the stream left open on a byte boundary
    crc: int  # CRC-32 of body


class ExpositionRenderer:
    """Builds ``/metrics`` responses from account views and the telemetry registry."""

    def __init__(self, views: Callable[[], Sequence[AccountView]],
                 telemetry_registry: CollectorRegistry, options: CollectorOptions,
                 wall: Callable[[], float] = wall_clock,
                 monotonic: Callable[[], float] = time.perf_counter,
                 telemetry_generation: Callable[[], int] | None = None) -> None:
        self._views = views
        self._telemetry = telemetry_registry
        self._generation = telemetry_generation
        self._options = options
        self._wall = wall
        self._monotonic = monotonic
        self._cache: dict[str, _Rendered] = {}
        self._own: dict[str, tuple[list[Metric], bytes]] = {}
        self._own_at: dict[str, tuple[int, bytes]] = {}  # telemetry generation, text
        self._with_own: dict[str, _WithOwn] = {}
        self._lock = threading.Lock()
        self._build_info = build_info()

    def render(self, accept: str | None, gzip: bool,
               started: float | None = None) -> tuple[bytes, str]:
        """The response body and its content type for one scrape."""
        started = self._monotonic() if started is None else started
        encoder, content_type = choose_encoder(accept or "")
        openmetrics = content_type.startswith("application/openmetrics-text")
        business = self._business(encoder, content_type, openmetrics)

        scrape = GaugeMetricFamily("scenario_exporter_scrape_duration_seconds",
                                   "Time spent producing this response.")
        generation = self._generation() if self._generation is not None else None
        at = self._own_at.get(content_type)
        if at is not None and at[0] == generation:
            own = at[1]  # no sample has changed since this text was encoded
        else:
            own = self._own_series(encoder, content_type, openmetrics,
                                   [self._build_info, *self._telemetry.collect()])
            if generation is not None:
                self._own_at[content_type] = (generation, own)
        scrape.add_metric([], self._monotonic() - started)
        live = encoder(_Families([scrape]))
        # The exporter's series change once per refresh at most: joined to the
        # business text, and as stored blocks after its gzip stream with their CRC,
        # they are kept; a scrape adds only its own tail.
        joined = self._with_own.get(content_type)
        if joined is None or joined.business is not business or joined.own is not own:
            joined = _WithOwn(business, own, business.body + own,
                              business.gzip_prefix + stored_blocks(own, final=False),
                              zlib.crc32(own, business.crc))
            self._with_own[content_type] = joined
        if not gzip:
            return joined.text + live, content_type
        return finish_gzip(joined.prefix, joined.crc, len(joined.text), live), content_type

    def _own_series(self, encoder: Callable[..., bytes], content_type: str, openmetrics: bool,
                    families: list[Metric]) -> bytes:
        """The text of the exporter's own series, encoded again only when a sample changed.

        They change when a refresh does something, not per scrape, and
        prometheus_client's encoders escape every sample name character by
        character: encoding them was most of a warm scrape's cost. The encoders
        write family after family, so this text followed by the scrape-duration
        family is byte for byte what encoding them all at once gives.
        """
        cached = self._own.get(content_type)
        if cached is not None and cached[0] == families:
            return cached[1]
        text = encoder(_Families(families))
        if openmetrics and text.endswith(_EOF):
            text = text[: -len(_EOF)]
        self._own[content_type] = (families, text)
        return text

    def _business(self, encoder: Callable[..., bytes], content_type: str,
                  openmetrics: bool) -> _Rendered:
        now = self._wall()
        views = self._views()
        key = tuple((v.account.name, v.version, is_withdrawn(v, now, self._options.max_stale))
                    for v in views)
        cached = self._cache.get(content_type)
        if cached is not None and cached.key == key:
            return cached
        with self._lock:
            cached = self._cache.get(content_type)
            if cached is not None and cached.key == key:
                return cached
            body = encoder(_Families(collect_accounts(views, now, self._options,
                                                      with_created=openmetrics)))
            if openmetrics and body.endswith(_EOF):
                body = body[: -len(_EOF)]
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip container
            prefix = compressor.compress(body) + compressor.flush(zlib.Z_SYNC_FLUSH)
            rendered = _Rendered(key, body, prefix, zlib.crc32(body))
            self._cache[content_type] = rendered
            return rendered
