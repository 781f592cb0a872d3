"""A simulated Scenario account, served through the real client as an httpx transport.

``--demo`` runs the exporter against :class:`DemoAccount` instead of Scenario's
API: same client, cache and collector, only the transport differs. The account
is deterministic (a seed, no randomness at run time) and its activity follows a
day/night curve, so values grow through the day and a newcomer's dashboards
move. Size knobs (models, users, granularity) make it the upstream of the
benchmarks and of the loopback fake used by the tests.

Every value is derived from integer cumulative job counts ``J(t)``, so that the
sum of any window's points equals ``J(end) - J(start)`` exactly, however the
window is cut into buckets: tests can compare exported values with the fake's
own totals to the last decimal.
"""

from __future__ import annotations

import base64
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from exporter.core.period import parse_iso

# The usage names documented by Scenario's API reference at the time of
# writing, plus a few seen in the wild; upstream adds new ones over time.
USAGE_NAMES = (
    "images-generation", "creative-unit-cost", "models-training", "upscale",
    "background-removal", "texture", "pixelate", "vectorize", "restyle", "detection",
    "inpaint", "outpaint", "skybox", "3d-generation", "video-generation",
    "audio-generation", "image-to-3d", "reframe", "prompt-generation", "captioning",
)
ASSET_KINDS = ("3d", "audio", "document", "image", "image-hdr", "json", "video")
NSFW_LABELS = ("explicit", "suggestive", "violence", "gore")

DAY = 86400.0
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
GRANULARITY_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600,
                       "1d": 86400, "7d": 604800}

_MODEL_WORDS = (
    ("Hero", "Pixel", "Isometric", "Cel-shaded", "Painterly", "Low-poly", "Neon", "Retro",
     "Dark Fantasy", "Cozy", "Sci-fi", "Anime"),
    ("Characters", "Props", "Weapons", "Environments", "Icons", "Textures", "Creatures",
     "Portraits", "Vehicles", "Skyboxes", "UI Kit", "Tilesets"),
)
_FIRST = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances",
          "John", "Hedy", "Claude", "Radia", "Tim", "Sophie", "Yuki", "Amara", "Mateo")
_LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov",
         "Ritchie", "Allen", "Carmack", "Lamarr", "Shannon", "Perlman", "Berners-Lee")
_UNIT_COSTS = (0.5, 1.0, 2.0, 2.5, 4.0, 5.0, 8.0, 12.5, 20.0, 50.0)


def activity(seconds: float) -> float:
    """Days of activity since :data:`EPOCH`: 1 per day, quiet at night, busy at noon UTC.

    The derivative ``(1 - 0.6 cos(2 pi t / day)) / day`` is always positive, so
    every cumulative count below only grows.
    """
    return seconds / DAY - 0.6 / (2 * math.pi) * math.sin(2 * math.pi * seconds / DAY)


@dataclass(frozen=True)
class DemoSeries:
    """A cumulative integer count at a daily rate, and the share of it from API keys."""

    per_day: float
    api_share: float
    discount_share: float = 0.0

    def total(self, t: float) -> int:
        return math.floor(self.per_day * activity(t))

    def api(self, t: float) -> int:
        return math.floor(self.total(t) * self.api_share)

    def discounted(self, t: float) -> int:
        return math.floor(self.total(t) * self.discount_share)

    def api_discounted(self, t: float) -> int:
        return math.floor(self.api(t) * self.discount_share)


@dataclass(frozen=True)
class DemoModel:
    id: str
    name: str
    unit_cost: float  # CU per job; multiples of 0.5 keep sums exact in binary
    jobs: DemoSeries


@dataclass(frozen=True)
class DemoUser:
    id: str
    full_name: str
    email: str | None
    is_api_key: bool
    api_key_id: str | None
    weight: float


@dataclass
class DemoAccount:
    """A deterministic simulated Scenario account with size knobs."""

    models: int = 36
    users: int = 18
    api_keys: int = 6
    seed: int = 20261101
    # Points per row follow the window length, as upstream does; a fixed value
    # makes large bodies on purpose (benchmarks).
    granularity: str | None = None
    # Round the API-key share of usages, assets and NSFW counts once per UTC day
    # of the window, as an upstream that keeps daily rollups would: windows cut
    # inside a day then add up to less than the whole (tests of splitting).
    api_key_rounding_per_day: bool = False
    _models: list[DemoModel] = field(init=False, repr=False)
    _users: list[DemoUser] = field(init=False, repr=False)
    _usages: dict[str, DemoSeries] = field(init=False, repr=False)
    _assets: dict[str, DemoSeries] = field(init=False, repr=False)
    _nsfw: dict[str, DemoSeries] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self._models = []
        for index in range(self.models):
            adjectives, nouns = _MODEL_WORDS
            # Distinct word pairs for the first 144 models, then numbered versions.
            pair = index % 144
            name = f"{adjectives[pair % 12]} {nouns[(pair // 12 + 5 * pair) % 12]}"
            if index >= 144:
                name += f" v{index // 144 + 1}"
            self._models.append(DemoModel(
                id=f"model_{rng.getrandbits(64):016x}"[:22], name=name,
                unit_cost=rng.choice(_UNIT_COSTS),
                jobs=DemoSeries(per_day=rng.uniform(20, 400) / (1 + index / 12),
                                api_share=rng.choice((0.0, 0.25, 0.5, 0.8, 1.0)),
                                discount_share=rng.choice((0.0, 0.0, 0.1, 0.2)))))
        self._users = []
        for index in range(self.users + self.api_keys):
            is_key = index >= self.users
            if is_key:
                key_id = f"key_{rng.getrandbits(48):012x}"
                self._users.append(DemoUser(
                    id=f"user_{rng.getrandbits(64):016x}", full_name=f"CI pipeline {index}",
                    email=None, is_api_key=True, api_key_id=key_id,
                    weight=rng.uniform(2, 6)))
            else:
                first, last = _FIRST[index % len(_FIRST)], _LAST[(index * 5) % len(_LAST)]
                self._users.append(DemoUser(
                    id=f"user_{rng.getrandbits(64):016x}", full_name=f"{first} {last}",
                    email=f"{first}.{last}{index}@studio.example".lower(), is_api_key=False,
                    api_key_id=None, weight=rng.uniform(0.2, 3)))
        self._usages = {name: DemoSeries(rng.uniform(5, 500), rng.choice((0.2, 0.5, 0.7)))
                        for name in USAGE_NAMES}
        self._assets = {kind: DemoSeries(rng.uniform(3, 800), rng.choice((0.3, 0.6)))
                        for kind in ASSET_KINDS}
        self._nsfw = {label: DemoSeries(rng.uniform(0.5, 6), 0.5) for label in NSFW_LABELS}

    @property
    def model_list(self) -> tuple[DemoModel, ...]:
        """The account's models, in the order of the response."""
        return tuple(self._models)

    # -- the response ---------------------------------------------------------

    def response(self, start: datetime, end: datetime,
                 sections: Sequence[str] | None = None) -> dict[str, Any]:
        """The body of ``GET /v1/usages`` for ``[start, end)``, as upstream shapes it."""
        wanted = set(sections or ("usages", "consumption", "model-usages", "asset-usages",
                                  "nsfw-usages"))
        granularity = self.granularity or _granularity_for(end - start)
        buckets = _buckets(start, end, GRANULARITY_SECONDS[granularity])
        api = _api_key_part(demo_seconds(start) if self.api_key_rounding_per_day else None)
        body: dict[str, Any] = {}
        if "usages" in wanted:
            body["usages"] = [
                {"usageName": name, "granularity": granularity,
                 "points": [{"time": t, "value": _text(s.total(b) - s.total(a)),
                             "apiKey": _text(api(s, a, b))}
                            for t, a, b in buckets if s.total(b) != s.total(a)]}
                for name, s in self._usages.items()]
        if "model-usages" in wanted:
            body["modelUsages"] = [
                {"modelId": m.id, "points": [self._model_point(m, t, a, b)
                                             for t, a, b in buckets
                                             if m.jobs.total(b) != m.jobs.total(a)]}
                for m in self._models]
        if "asset-usages" in wanted:
            body["assetUsages"] = [_count_row("kind", k, s, buckets, api)
                                   for k, s in self._assets.items()]
        if "nsfw-usages" in wanted:
            body["nsfwUsages"] = [_count_row("label", k, s, buckets, api)
                                  for k, s in self._nsfw.items()]
        if "consumption" in wanted:
            body["consumption"] = self._consumption(demo_seconds(start), demo_seconds(end))
        body["entities"] = {
            "models": [{"id": m.id, "name": m.name, "shortDescription": None}
                       for m in self._models],
            "users": [{"id": u.id, "isApiKey": u.is_api_key, "apiKeyId": u.api_key_id,
                       "apiKeyStatus": "active" if u.is_api_key else None,
                       "email": u.email, "fullName": u.full_name, "avatar": None}
                      for u in self._users],
        }
        return body

    def _model_point(self, m: DemoModel, time: str, a: float, b: float) -> dict[str, Any]:
        s = m.jobs
        jobs = s.total(b) - s.total(a)
        # Upstream's sign convention for discounts is undocumented: the demo sends
        # them negative, as the consumption example of the API reference does.
        return {"time": time, "cost": jobs * m.unit_cost,
                "discount": -(s.discounted(b) - s.discounted(a)) * m.unit_cost / 4,
                "apiKeyCost": (s.api(b) - s.api(a)) * m.unit_cost,
                "apiKeyDiscount": -(s.api_discounted(b) - s.api_discounted(a)) * m.unit_cost / 4,
                "jobs": jobs}

    def _consumption(self, a: float, b: float) -> list[dict[str, Any]]:
        cost = sum((m.jobs.total(b) - m.jobs.total(a)) * m.unit_cost for m in self._models)
        discount = sum((m.jobs.discounted(b) - m.jobs.discounted(a)) * m.unit_cost / 4
                       for m in self._models)
        weights = sum(u.weight for u in self._users)
        rows = []
        for user in self._users:
            share = user.weight / weights
            value, off = round(cost * share, 2), round(discount * share, 2)
            rows.append({"userId": user.id, "value": value, "discount": -off,
                         "total": round(value - off, 2)})
        return rows


def demo_seconds(moment: datetime) -> float:
    """Seconds since the demo's epoch: the time axis of every :class:`DemoSeries`."""
    return (moment - EPOCH).total_seconds()


def _text(number: float) -> str:
    return f"{number:g}" if number != int(number) else str(int(number))


def _granularity_for(length: timedelta) -> str:
    """The bucket size upstream would choose for a window of this length."""
    seconds = length.total_seconds()
    if seconds <= 2 * 3600:
        return "1m"
    if seconds <= 6 * 3600:
        return "5m"
    if seconds <= 86400:
        return "15m"
    if seconds <= 3 * 86400:
        return "1h"
    if seconds <= 62 * 86400:
        return "1d"
    return "7d"


def _buckets(start: datetime, end: datetime, size: int) -> list[tuple[str, float, float]]:
    """``(bucket start ISO, clipped start, clipped end)`` for every bucket of the window."""
    a, b = demo_seconds(start), demo_seconds(end)
    first = math.floor(a / size) * size
    out = []
    t = first
    while t < b:
        label = (EPOCH + timedelta(seconds=t)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        out.append((label, max(t, a), min(t + size, b)))
        t += size
    return out


_ApiKeyPart = Callable[[DemoSeries, float, float], int]


def _api_key_part(window_start: float | None) -> _ApiKeyPart:
    """The API-key part of a series over a bucket ``[a, b)``.

    Without *window_start*: from the cumulative API-key count, exact however
    the window is cut. With it: rounded down once per UTC day of the window
    (the day's part that lies in the window), so that the buckets of one day add
    up to that day's rounded value, and two windows cut inside a day round twice.
    """
    if window_start is None:
        return lambda s, a, b: s.api(b) - s.api(a)
    start = window_start

    def per_day(s: DemoSeries, a: float, b: float) -> int:
        total = 0
        day = math.floor(a / DAY) * DAY
        while day < b:
            origin = s.total(max(day, start))
            low = math.floor((s.total(max(a, day)) - origin) * s.api_share)
            high = math.floor((s.total(min(b, day + DAY)) - origin) * s.api_share)
            total += high - low
            day += DAY
        return total

    return per_day


def _count_row(key: str, name: str, s: DemoSeries, buckets: list[tuple[str, float, float]],
               api: _ApiKeyPart) -> dict[str, Any]:
    return {key: name, "points": [{"time": t, "count": s.total(b) - s.total(a),
                                   "countApiKey": api(s, a, b)}
                                  for t, a, b in buckets if s.total(b) != s.total(a)]}


class Refused(Exception):
    """A request the demo API refuses, with the status and message upstream would send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = json.dumps({"message": message}).encode()


def check_request(path: str, authorization: str | None, api_key: str, api_secret: str) -> None:
    """Refuse what upstream refuses before reading the query: another path (404), other
    credentials than these Basic ones (401)."""
    if not path.rstrip("/").endswith("/usages"):
        raise Refused(404, "not found")
    expected = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()
    if authorization != f"Basic {expected}":
        raise Refused(401, "Unauthorized")


def requested_window(params: Mapping[str, str]) -> tuple[datetime, datetime, list[str]]:
    """``(start, end, sections)`` asked by the query string; 400 when a date is missing."""
    try:
        start, end = parse_iso(params["startDate"]), parse_iso(params["endDate"])
    except (KeyError, ValueError):
        raise Refused(400, "startDate and endDate are required") from None
    return start, end, [s for s in params.get("type", "").split(",") if s]


def demo_transport(account: DemoAccount, api_key: str, api_secret: str) -> httpx.MockTransport:
    """An httpx transport that answers ``GET /v1/usages`` from *account*."""

    def handle(request: httpx.Request) -> httpx.Response:
        try:
            check_request(request.url.path, request.headers.get("Authorization"), api_key,
                          api_secret)
            start, end, sections = requested_window(request.url.params)
        except Refused as refused:
            return httpx.Response(refused.status, content=refused.body,
                                  headers={"Content-Type": "application/json"})
        body = json.dumps(account.response(start, end, sections), separators=(",", ":"))
        return httpx.Response(200, content=body.encode(),
                              headers={"Content-Type": "application/json"})

    return httpx.MockTransport(handle)
