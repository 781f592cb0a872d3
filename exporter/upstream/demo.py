"""A simulated Scenario account: what ``GET /v1/usages`` answers for any window.

``--demo`` runs the exporter against :class:`DemoAccount` instead of Scenario's
API (served by :mod:`exporter.upstream.demo_api` as an httpx transport): same
client, cache and collector, only the transport differs. Every body is shaped
as Scenario's SDK (``scenario-sdk`` 2.4) types it, with its enum values only. The account
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

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

# The sections of GET /v1/usages, in the order of the SDK's `type` enum.
SECTIONS = ("usages", "activity", "consumption", "model-usages", "asset-usages", "nsfw-usages",
            "quality-gate-usages")
# The usage names of the SDK's enum (scenario-sdk 2.4, Usage.usage_name), each with the
# Creative Units of one unit of it: 0 for a free action, negative for refunds (a
# credit). Multiples of 0.5 keep every sum exact in binary.
USAGE_UNIT_COSTS = {
    "background-removal": 1.0, "captioning": 0.5, "creative-unit-cost": 0.0,
    "creative-unit-discount": 0.0, "custom": 2.0, "custom-asset-created": 0.0,
    "detection": 0.5, "image-prompt-editing": 2.5, "images-generation": 4.0,
    "ip-detection": 1.0, "models-training": 50.0, "patch": 2.0, "pixelate": 0.5,
    "refunds": -5.0, "repaint": 2.5, "restyle": 2.0, "segmentation": 1.0,
    "skybox-base-360": 8.0, "skybox-upscale-360": 4.0, "texture": 5.0, "upscale": 2.0,
    "vectorization": 1.0,
}
USAGE_NAMES = tuple(USAGE_UNIT_COSTS)
# The asset kinds of the SDK's enum (AssetUsage.kind).
ASSET_KINDS = ("3d", "audio", "document", "image", "image-hdr", "json", "text", "video")
NSFW_LABELS = ("explicit", "suggestive", "violence", "gore")
# The Quality Gate's verdict buckets; "total" counts every scored asset.
VERDICTS = ("pass", "warn", "fail")
# The billing actions of a user's consumption (costDetails), with their shares of it.
COST_ACTIONS = (("generation", 0.6), ("training", 0.25), ("upscale", 0.1),
                ("quality-gate", 0.05))

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
    _gates: dict[str, DemoSeries] = field(init=False, repr=False)

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
        self._usages = {name: DemoSeries(rng.uniform(5, 500), rng.choice((0.2, 0.5, 0.7)),
                                         rng.choice((0.0, 0.1, 0.2)))
                        for name in USAGE_NAMES}
        self._assets = {kind: DemoSeries(rng.uniform(3, 800), rng.choice((0.3, 0.6)))
                        for kind in ASSET_KINDS}
        self._nsfw = {label: DemoSeries(rng.uniform(0.5, 6), 0.5) for label in NSFW_LABELS}
        self._gates = {verdict: DemoSeries(rate, rng.choice((0.3, 0.6)))
                       for verdict, rate in zip(VERDICTS, (rng.uniform(100, 300),
                                                           rng.uniform(10, 40),
                                                           rng.uniform(2, 12)), strict=True)}

    @property
    def model_list(self) -> tuple[DemoModel, ...]:
        """The account's models, in the order of the response."""
        return tuple(self._models)

    @property
    def user_list(self) -> tuple[DemoUser, ...]:
        """The account's users (API keys last), in the order of the response."""
        return tuple(self._users)

    # -- the response ---------------------------------------------------------

    def response(self, start: datetime, end: datetime, sections: Sequence[str] | None = None,
                 *, drop_zero_points: bool = True) -> dict[str, Any]:
        """The body of ``GET /v1/usages`` for ``[start, end)``, as upstream shapes it.

        *sections* are the ``type`` values asked (None: every section). With
        *drop_zero_points*, as the exporter asks, points whose numbers are all 0
        are left out (each row stays, with ``points: []``); without, upstream
        sends every bucket of the window.
        """
        wanted = set(sections or SECTIONS)
        granularity = self.granularity or _granularity_for(end - start)
        buckets = _buckets(start, end, GRANULARITY_SECONDS[granularity])
        api = _api_key_part(demo_seconds(start) if self.api_key_rounding_per_day else None)

        def kept(s: DemoSeries) -> list[tuple[str, float, float]]:
            return [(t, a, b) for t, a, b in buckets
                    if not drop_zero_points or s.total(b) != s.total(a)]

        body: dict[str, Any] = {}
        if "usages" in wanted:
            body["usages"] = [
                {"usageName": name, "granularity": granularity,
                 "points": [_usage_point(s, USAGE_UNIT_COSTS[name], api, t, a, b)
                            for t, a, b in kept(s)]}
                for name, s in self._usages.items()]
        if "activity" in wanted:
            body["activity"] = []  # raw events: the exporter never asks for them
        if "model-usages" in wanted:
            body["modelUsages"] = [
                {"modelId": m.id, "points": [self._model_point(m, t, a, b)
                                             for t, a, b in kept(m.jobs)]}
                for m in self._models]
        if "asset-usages" in wanted:
            body["assetUsages"] = [_count_row("kind", k, s, kept(s), api)
                                   for k, s in self._assets.items()]
        if "nsfw-usages" in wanted:
            body["nsfwUsages"] = [_count_row("label", k, s, kept(s), api)
                                  for k, s in self._nsfw.items()]
        if "quality-gate-usages" in wanted:
            body["qualityGateUsages"] = self._quality_gates(buckets, api, drop_zero_points)
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

    def _quality_gates(self, buckets: list[tuple[str, float, float]], api: _ApiKeyPart,
                       drop_zero_points: bool) -> list[dict[str, Any]]:
        """One row per verdict, and ``total``: every scored asset, the sum of the others."""
        rows = [_count_row("verdict", verdict, s, buckets, api)
                for verdict, s in self._gates.items()]
        total: list[dict[str, Any]] = []
        for index, (time, _, _) in enumerate(buckets):
            count = sum(row["points"][index]["count"] for row in rows)
            count_api = sum(row["points"][index]["countApiKey"] for row in rows)
            total.append({"time": time, "count": count, "countApiKey": count_api})
        rows.insert(0, {"verdict": "total", "points": total})
        if drop_zero_points:
            for row in rows:
                row["points"] = [p for p in row["points"] if p["count"] or p["countApiKey"]]
        return rows

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
                         "total": round(value - off, 2), "costDetails": _cost_details(value)})
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
    """A row of counts (assets, NSFW flags, verdicts), a point for each of *buckets*."""
    return {key: name, "points": [{"time": t, "count": s.total(b) - s.total(a),
                                   "countApiKey": api(s, a, b)} for t, a, b in buckets]}


def _usage_point(s: DemoSeries, unit_cost: float, api: _ApiKeyPart, time: str, a: float,
                 b: float) -> dict[str, Any]:
    """A bucket of a usage row: counts as numeric text, Creative Units as numbers (a
    negative cost is a credit; discounts are sent negative, as for models)."""
    count, count_api = s.total(b) - s.total(a), api(s, a, b)
    return {"time": time, "value": _text(count), "apiKey": _text(count_api),
            # + 0.0: a free or refunded action's empty bucket is 0, not -0.
            "cost": count * unit_cost + 0.0, "apiKeyCost": count_api * unit_cost + 0.0,
            "discount": -(s.discounted(b) - s.discounted(a)) * abs(unit_cost) / 4,
            "apiKeyDiscount": -(s.api_discounted(b) - s.api_discounted(a)) * abs(unit_cost) / 4}


def _cost_details(value: float) -> dict[str, float]:
    """A user's CU per billing action: shares of *value*, to the cent, adding up to it."""
    details: dict[str, float] = {}
    left = value
    for action, share in COST_ACTIONS[:-1]:
        details[action] = round(value * share, 2)
        left -= details[action]
    details[COST_ACTIONS[-1][0]] = round(max(left, 0.0), 2)
    return details
