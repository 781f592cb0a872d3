"""Rendering ``/metrics``: the whole exposition, once per change of what it shows.

What a scrape shows changes when a refresh lands (an account's view), when an
account's data crosses the staleness bound, or when the exporter's own
counters move (upstream calls, failures). Until one of these changes, every
scrape of a format gets the same bytes, so each format is encoded once per
change with prometheus_client's encoder, and gzip-compressed once, on the first
scrape that asks for gzip.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from gzip import compress

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder

from exporter.core.period import wall_clock
from exporter.core.values import AccountView
from exporter.metrics.business import CollectorOptions, collect_accounts, is_withdrawn


class _Exposition:
    """One scrape's families, as a collector: the accounts', then the exporter's own."""

    def __init__(self, views: Sequence[AccountView], now: float, options: CollectorOptions,
                 own: CollectorRegistry, with_created: bool) -> None:
        self._views = views
        self._now = now
        self._options = options
        self._own = own
        self._with_created = with_created

    def collect(self) -> Iterator[Metric]:
        yield from collect_accounts(self._views, self._now, self._options,
                                    with_created=self._with_created)
        yield from self._own.collect()


@dataclass
class _Rendered:
    key: tuple[object, ...]
    text: bytes
    packed: bytes | None = None  # gzip of text, made by the first scrape that asks for it


class ExpositionRenderer:
    """Builds ``/metrics`` responses from account views and the exporter's own registry.

    *telemetry_generation* changes whenever a sample of *registry* does; without
    it every scrape renders again.
    """

    def __init__(self, views: Callable[[], Sequence[AccountView]],
                 registry: CollectorRegistry, options: CollectorOptions,
                 wall: Callable[[], float] = wall_clock,
                 telemetry_generation: Callable[[], int] | None = None) -> None:
        self._views = views
        self._registry = registry
        self._generation = telemetry_generation
        self._options = options
        self._wall = wall
        self._cache: dict[str, _Rendered] = {}
        self._lock = threading.Lock()  # one render at a time: concurrent scrapes wait for it

    def render(self, accept: str | None, gzip: bool) -> tuple[bytes, str]:
        """The response body and its content type for one scrape."""
        encoder, content_type = choose_encoder(accept or "")
        now = self._wall()
        views = self._views()
        # Read before collecting: a change during the render shows at the next scrape.
        generation = self._generation() if self._generation is not None else object()
        key = (generation, *((v.account.name, v.version,
                              is_withdrawn(v, now, self._options.max_stale)) for v in views))
        rendered = self._cache.get(content_type)
        if rendered is None or rendered.key != key:
            with self._lock:
                rendered = self._cache.get(content_type)
                if rendered is None or rendered.key != key:
                    openmetrics = content_type.startswith("application/openmetrics-text")
                    # In the text format, `_created` would be one more series per counter.
                    exposition = _Exposition(views, now, self._options, self._registry,
                                             with_created=openmetrics)
                    rendered = _Rendered(key, encoder(exposition))
                    self._cache[content_type] = rendered
        if not gzip:
            return rendered.text, content_type
        if rendered.packed is None:
            with self._lock:
                if rendered.packed is None:
                    rendered.packed = compress(rendered.text, compresslevel=6, mtime=0)
        return rendered.packed, content_type
