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

Each account is encoded on its own, once per change of its view (its *part*), and
the exposition is assembled from the parts family by family, with the teams' part
and the exporter's own series after them: the bytes of one encoding of everything,
at the cost of encoding only the accounts that changed (1,000 accounts × 50 models
take 17 s to encode in OpenMetrics; one account takes 17 ms). A scrape with a
*deadline* encodes the accounts that changed until then and serves the others as
they were last encoded (or not at all, before their first encoding): the first
scrape after start-up is answered in time with what is ready, the next ones add the
rest.
"""

from __future__ import annotations

import gzip
import itertools
import re
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.core.period import wall_clock
from exporter.core.team import TeamView
from exporter.core.values import AccountView
from exporter.metrics.business import CollectorOptions, is_withdrawn
from exporter.metrics.collect import AccountsCollector, OwnCollector

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


# A family's comment lines (HELP, TYPE, UNIT) and its sample lines, by family name: bytes
# when just encoded, views of the last exposition once it has been assembled.
Bytes = bytes | memoryview
Sections = dict[bytes, tuple[Bytes, Bytes]]
_FAMILY = re.compile(rb"^# HELP (\S+)", re.MULTILINE)
_EOF = b"# EOF\n"
# The encoding time of one account's part assumed before any was measured (the demo
# account of 50 models in OpenMetrics, on a 2-core machine).
_FIRST_PART_SECONDS = 0.02


def split_families(text: bytes) -> Sections:
    """An encoded exposition cut into its families, in order (without OpenMetrics' EOF)."""
    text = text.removesuffix(_EOF)
    starts = [match.start() for match in _FAMILY.finditer(text)]
    sections: Sections = {}
    for begin, end in zip(starts, [*starts[1:], len(text)], strict=True):
        samples = begin
        while text.startswith(b"#", samples, end):
            samples = text.index(b"\n", samples, end) + 1
        name = _FAMILY.match(text, begin).group(1)  # type: ignore[union-attr]
        sections[name] = (text[begin:samples], text[samples:end])
    return sections


def join_families(parts: Sequence[Sections], openmetrics: bool) -> bytes:
    """The exposition of *parts*: each family's comments once, then its samples part after
    part (the families in the order the parts give them).

    Each part's sections are then views of the result, so that the parts kept for the
    next scrape and the exposition served share their bytes (at 1,000 accounts × 50
    models, 157 MB in OpenMetrics) instead of holding them twice.
    """
    order: dict[bytes, Bytes] = {}
    for part in parts:
        for name, (comments, _) in part.items():
            order.setdefault(name, comments)
    chunks: list[Bytes] = []
    where: list[tuple[Sections, bytes, int, int]] = []  # part, family, comments, samples
    for name, comments in order.items():
        at = len(chunks)
        chunks.append(comments)
        for part in parts:
            if name in part:
                where.append((part, name, at, len(chunks)))
                chunks.append(part[name][1])
    if openmetrics:
        chunks.append(_EOF)
    text = b"".join(chunks)
    view = memoryview(text)
    offsets = list(itertools.accumulate((len(chunk) for chunk in chunks), initial=0))
    for part, name, comments_at, samples_at in where:
        part[name] = (view[offsets[comments_at]:offsets[comments_at + 1]],
                      view[offsets[samples_at]:offsets[samples_at + 1]])
    return text


_SERIALS = itertools.count()


@dataclass
class _Part:
    key: tuple[object, ...]
    sections: Sections
    serial: int = field(default_factory=lambda: next(_SERIALS))  # tells encodings apart


class Exposition:
    """``/metrics`` of the accounts' views and the exporter's own registry (``/probe`` of
    one account's view: no *own*).

    *own_generation* changes whenever a sample of *own* does; without it every
    scrape renders again. *clock* is monotonic, for the deadline of a scrape.
    """

    def __init__(self, views: Callable[[], Sequence[AccountView]],
                 own: CollectorRegistry | None,
                 options: CollectorOptions, wall: Callable[[], float] = wall_clock,
                 own_generation: Callable[[], int] | None = None,
                 teams: Callable[[], Sequence[TeamView]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._views = views
        self._teams = teams or (lambda: ())
        self._own = own
        self._generation = own_generation
        self._options = options
        self._wall = wall
        self._clock = clock
        self._cache: dict[str, _Rendered] = {}
        # Per format: each account's part by account name, and the teams' part.
        self._parts: dict[str, dict[str, _Part]] = {}
        self._team_parts: dict[str, _Part] = {}
        self._part_seconds = _FIRST_PART_SECONDS  # the slowest mean seen, per part
        self._lock = threading.Lock()  # one render at a time: concurrent scrapes wait for it

    def respond(self, accept: str | None, accept_encoding: str | None,
                names: Collection[str] = (), deadline: float | None = None,
                ) -> tuple[Headers, bytes]:
        """The headers and body answering one scrape (``names``: the ``name[]`` filter;
        *deadline*: the :attr:`clock` time after which no account is encoded again)."""
        compress = gzip_wanted(accept_encoding)
        rendered, content_type = self._rendered(negotiable_accept(accept), deadline)
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

    def render_reserve(self, accept: str | None, limit: float) -> float:
        """Seconds a scrape should keep for encoding the accounts whose part in the format
        of *accept* is missing or old (at most *limit*): a first scrape waits for data
        only as long as leaves it that time."""
        _, content_type = choose_encoder(negotiable_accept(accept))
        parts = self._parts.get(content_type, {})
        pending = sum(1 for view in self._views()
                      if (part := parts.get(view.account.name)) is None
                      or part.key[0] != view.version)
        return min(limit, pending * self._part_seconds)

    def _rendered(self, accept: str, deadline: float | None) -> tuple[_Rendered, str]:
        """The whole exposition in the format *accept* asks for, assembled once per change."""
        encoder, content_type = choose_encoder(accept)
        openmetrics = content_type.startswith("application/openmetrics-text")
        now = self._wall()
        views = self._views()
        teams = self._teams()
        # Read before collecting: a change during the render shows at the next scrape.
        generation = self._generation() if self._generation is not None else object()
        with self._lock:
            parts = self._parts.setdefault(content_type, {})
            encoded = 0
            started = self._clock()
            for view in views:
                withdrawn = is_withdrawn(view, now, self._options.max_stale)
                part = parts.get(view.account.name)
                if part is not None and part.key == (view.version, withdrawn):
                    continue
                # Past the deadline an account is served as it was last encoded (not at
                # all before its first encoding); one whose data is withdrawn costs
                # nothing to encode, and is never served past it.
                if withdrawn or deadline is None or self._clock() < deadline:
                    collector = AccountsCollector([view], now, self._options,
                                                  with_created=openmetrics)
                    parts[view.account.name] = _Part((view.version, withdrawn),
                                                     split_families(encoder(collector)))
                    encoded += 1
            if encoded:
                spent = (self._clock() - started) / encoded
                self._part_seconds = max(self._part_seconds, spent)
            team_key = (*(t.version for t in teams), _minute(now) if teams else None)
            team_part = self._team_parts.get(content_type)
            if team_part is None or team_part.key != team_key:
                team_part = _Part(team_key, split_families(encoder(AccountsCollector(
                    [], now, self._options, with_created=openmetrics, teams=teams))))
                self._team_parts[content_type] = team_part
            chosen = [parts[v.account.name] for v in views if v.account.name in parts]
            key = (generation, *(part.serial for part in chosen), team_part.serial)
            rendered = self._cache.get(content_type)
            if rendered is None or rendered.key != key:
                sections = [part.sections for part in chosen]
                sections.append(team_part.sections)
                if self._own is not None:
                    sections.append(split_families(encoder(OwnCollector(views, teams,
                                                                        self._own))))
                rendered = _Rendered(key, join_families(sections, openmetrics))
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
