"""Answering ``/metrics``: one :meth:`Exposition.respond` from request headers to bytes.

It negotiates the format from ``Accept``, encodes with prometheus_client's
encoder, keeps only the samples named by ``name[]``, gzips when
``Accept-Encoding`` asks for it, and says so in the headers (prometheus_client's
own ``_bake_output`` does the same steps).

What a scrape shows changes when a refresh lands (an account's view), when an
account's data crosses the staleness bound, or when the exporter's own
counters move (upstream calls, failures). Until one of these changes, every
scrape of a format gets the same bytes: each format is encoded once per change,
and gzip-compressed once, on the first scrape that asks for gzip.
"""

from __future__ import annotations

import gzip
import re
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.core.period import wall_clock
from exporter.core.team import TeamView
from exporter.core.values import AccountView
from exporter.metrics.business import CollectorOptions, is_withdrawn
from exporter.metrics.collect import AccountsCollector

Headers = list[tuple[str, str]]

# What a media range in Accept may say for the exposition formats; anything
# else in a range drops that range, as Prometheus' own servers fall back to the
# text format on a malformed Accept. Nothing else from the header reaches
# Content-Type.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+*-]+")
_PARAMETERS = {
    "version": re.compile(r"\d{1,3}\.\d{1,3}(?:\.\d{1,3})?"),
    "escaping": re.compile(r"allow-utf-8|underscores|dots|values"),
    "charset": re.compile(r"[A-Za-z0-9_-]{1,32}"),
    "q": re.compile(r"[01](?:\.\d{0,3})?"),
}


def negotiable_accept(header: str | None) -> str:
    """*header* reduced to the media ranges whose every parameter is well formed."""
    ranges: list[str] = []
    for part in (header or "").split(","):
        media, *params = (token.strip() for token in part.split(";"))
        if not _MEDIA_TYPE.fullmatch(media):
            continue
        kept = [media]
        for param in params:
            name, _, value = param.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            pattern = _PARAMETERS.get(name)
            if pattern is None or not pattern.fullmatch(value):
                break
            kept.append(f"{name}={value}")
        else:
            ranges.append(";".join(kept))
    return ",".join(ranges)


def gzip_wanted(header: str | None) -> bool:
    """Whether Accept-Encoding asks for gzip with a non-zero quality (``gzip;q=0`` refuses it)."""
    for part in (header or "").split(","):
        coding, *params = (token.strip() for token in part.split(";"))
        if coding.lower() != "gzip":
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        return quality > 0  # NaN is not > 0
    return False


def select_samples(body: bytes, names: Collection[str]) -> bytes:
    """Keep the samples named in *names* (``name[]=`` in the query), with their families' comments.

    prometheus_client's own handler restricts the registry to these sample
    names; both exposition formats write each family as its comment lines
    followed by its samples, so filtering the text gives the same result.
    """
    out: list[bytes] = []
    comments: list[bytes] = []
    for line in body.splitlines(keepends=True):
        if line.startswith(b"# EOF"):
            out.append(line)
        elif line.startswith(b"#"):
            if line.startswith(b"# HELP ") or not comments:
                comments = []
            comments.append(line)
        else:
            name = line.split(b"{", 1)[0].split(b" ", 1)[0].decode("utf-8", "replace")
            if name in names:
                out.extend(comments)
                comments = []
                out.append(line)
    return b"".join(out)


@dataclass
class _Rendered:
    key: tuple[object, ...]
    text: bytes
    packed: bytes | None = None  # gzip of text, made by the first scrape that asks for it


class Exposition:
    """``/metrics`` of the accounts' views and the exporter's own registry (``/probe`` of
    one account's view: no *own*).

    *own_generation* changes whenever a sample of *own* does; without it every
    scrape renders again.
    """

    def __init__(self, views: Callable[[], Sequence[AccountView]],
                 own: CollectorRegistry | None,
                 options: CollectorOptions, wall: Callable[[], float] = wall_clock,
                 own_generation: Callable[[], int] | None = None,
                 teams: Callable[[], Sequence[TeamView]] | None = None) -> None:
        self._views = views
        self._teams = teams or (lambda: ())
        self._own = own
        self._generation = own_generation
        self._options = options
        self._wall = wall
        self._cache: dict[str, _Rendered] = {}
        self._lock = threading.Lock()  # one render at a time: concurrent scrapes wait for it

    def respond(self, accept: str | None, accept_encoding: str | None,
                names: Collection[str] = ()) -> tuple[Headers, bytes]:
        """The headers and body answering one scrape (``names``: the ``name[]`` filter)."""
        compress = gzip_wanted(accept_encoding)
        rendered, content_type = self._rendered(negotiable_accept(accept))
        if names:
            body = select_samples(rendered.text, names)
            if compress:
                body = gzip.compress(body)
        elif compress:
            body = self._packed(rendered)
        else:
            body = rendered.text
        headers = [("Content-Type", content_type)]
        if compress:
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Vary", "Accept, Accept-Encoding"))
        return headers, body

    def _rendered(self, accept: str) -> tuple[_Rendered, str]:
        """The whole exposition in the format *accept* asks for, rendered once per change."""
        encoder, content_type = choose_encoder(accept)
        now = self._wall()
        views = self._views()
        teams = self._teams()
        # Read before collecting: a change during the render shows at the next scrape.
        generation = self._generation() if self._generation is not None else object()
        key = (generation, *((v.account.name, v.version,
                              is_withdrawn(v, now, self._options.max_stale)) for v in views),
               *(t.version for t in teams), _minute(now) if teams else None)
        rendered = self._cache.get(content_type)
        if rendered is None or rendered.key != key:
            with self._lock:
                rendered = self._cache.get(content_type)
                if rendered is None or rendered.key != key:
                    openmetrics = content_type.startswith("application/openmetrics-text")
                    collector = AccountsCollector(views, now, self._options, own=self._own,
                                                  with_created=openmetrics, teams=teams)
                    rendered = _Rendered(key, encoder(collector))
                    self._cache[content_type] = rendered
        return rendered, content_type

    def _packed(self, rendered: _Rendered) -> bytes:
        if rendered.packed is None:
            with self._lock:
                if rendered.packed is None:
                    rendered.packed = gzip.compress(rendered.text, compresslevel=6, mtime=0)
        return rendered.packed


def _minute(now: float) -> int:
    """The minute of *now*: prepaid packs expire and team figures go stale as time passes,
    so an exposition with team figures is rendered again at least once a minute."""
    return int(now // 60)
