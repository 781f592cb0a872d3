"""The demo account's team: what Scenario's team endpoints (SDK 2.4) answer for it.

Pure functions of a :class:`~exporter.upstream.demo.DemoAccount` and of ``now`` (aware,
UTC), served by :mod:`exporter.upstream.demo_api` (``--demo``) and by the tests'
loopback fake. Every body validates under ``scenario_sdk.types``: ``TeamListResponse``,
``TeamRetrieveLimitsResponse``, ``TeamRetrieveResponse``, and each item of a
``GET /projects`` page under ``ProjectListResponse``.

What the demo team looks like, and which rule each figure exercises:

- ``team_demo`` "Demo Studio", plan ``cu-team-v2``; the key sees it as role ``key``.
- The billing period runs from the 17th 09:00:00 UTC to the next month's 17th
  09:00:00 UTC (the one containing ``now``): neither the 1st nor midnight, so a
  reader that assumes calendar months is caught.
- ``limits.creativeUnits`` (the allowance): the account's mean monthly CU x 1.2,
  rounded up to 50 000 (1 300 000 for the default account).
  ``values.creativeUnits``: the models' cost over [period start, now], the same
  numbers as ``GET /usages`` (a multiple of 0.5, exact).
- Four prepaid packs: 4 000 left, expiring 4 to 5 days after ``now`` (within 7
  days: "expiring soon"); 18 000 left, expiring 60 days after the period; 2 500
  left but expired 10 days before the period started (not prepaid any more); a
  pack used up (0 left, not yet expired). Usable: 22 000.
- Every member and key carries its *effective* cap, as the SDK documents it (its own
  override, else ``defaultUserMaxConsumption``): the default is 1.25 x the largest
  expected monthly consumption of a member; the admin's override is the allowance,
  the second human member's and the first API key's (when the account has API-key
  users) are ~1.05-1.1 x their expected month (close to the cap at the period's end).
- Members: the account's human users (ids of the usages' ``consumption[].userId``),
  each with its usages share of the period's CU. Keys: the account's API-key users
  (``id`` is their usages ``userId``), active, used a few minutes ago, with their
  share; then an ``inactive`` key last used before the period (0 CU), and a
  project-scoped key never used (no ``lastUsedAt``, 0 CU).
- Five projects with 40/25/20/10/5 % of the period's CU; only "Console Port" has a
  ``maxConsumption``. ``GET /projects`` pages hold at most 2 items whatever
  ``pageSize`` asks (3 pages), the last without ``nextPaginationToken``.
"""

from __future__ import annotations

import base64
import math
import random
from datetime import datetime, timedelta, timezone
from typing import Any

from exporter.upstream.demo import DemoAccount, DemoUser, demo_seconds

DEMO_TEAM_ID = "team_demo"
DEMO_TEAM_NAME = "Demo Studio"
DEMO_PLAN = "cu-team-v2"
PERIOD_DAY, PERIOD_HOUR = 17, 9  # the billing period starts on the 17th at 09:00 UTC
MAX_PAGE_SIZE = 2  # GET /projects never answers more per page, whatever pageSize says
SOON = timedelta(days=7)
MEAN_MONTH_DAYS = 30.44
CREATED = "2025-03-14T10:00:00.000Z"
PROJECTS = (("Mobile RPG", 0.40), ("Console Port", 0.25), ("Marketing Art", 0.20),
            ("Prototype Lab", 0.10), ("Archive 2025", 0.05))
CAPPED_PROJECT = 1
KEY_ROLE = "team.read;team.usage.read"
_PROJECT_KEY_FIELDS = ("id", "apiKeyId", "apiKeyStatus", "name", "scope", "createdAt",
                       "updatedAt")


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _utc(now: datetime) -> datetime:
    return now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(
        timezone.utc)


def _months_later(moment: datetime, months: int) -> datetime:
    year, month = divmod(moment.year * 12 + moment.month - 1 + months, 12)
    return moment.replace(year=year, month=month + 1)


def _round_up(value: float, step: float) -> float:
    return float(max(step, math.ceil(value / step) * step))


def billing_period(now: datetime) -> tuple[datetime, datetime]:
    """The billing period ``[start, end)`` containing *now*: the 17th 09:00 UTC to the
    next month's."""
    now = _utc(now)
    start = now.replace(day=PERIOD_DAY, hour=PERIOD_HOUR, minute=0, second=0, microsecond=0)
    if now < start:
        start = _months_later(start, -1)
    return start, _months_later(start, 1)


def _monthly_cost(account: DemoAccount) -> float:
    """The account's mean CU per month (``activity`` averages one day per day)."""
    return sum(m.jobs.per_day * m.unit_cost for m in account.model_list) * MEAN_MONTH_DAYS


def allowance(account: DemoAccount) -> float:
    """``limits.creativeUnits``: the plan's CU for a billing period."""
    return _round_up(_monthly_cost(account) * 1.2, 50000)


def used(account: DemoAccount, now: datetime) -> float:
    """``values.creativeUnits``: the models' cost from the period's start to *now*."""
    a, b = demo_seconds(billing_period(now)[0]), demo_seconds(_utc(now))
    return float(sum((m.jobs.total(b) - m.jobs.total(a)) * m.unit_cost
                     for m in account.model_list))


def _share(account: DemoAccount, user: DemoUser) -> float:
    return user.weight / sum(u.weight for u in account.user_list)


def _expected(account: DemoAccount, user: DemoUser) -> float:
    return _monthly_cost(account) * _share(account, user)


def default_cap(account: DemoAccount) -> float:
    """``defaultUserMaxConsumption``: 1.25 x the largest expected month of a member."""
    return _round_up(max((_expected(account, u) for u in account.user_list), default=0) * 1.25,
                     1000)


def _project_ids(account: DemoAccount) -> list[str]:
    """Ids the usages do not have, from the account's seed."""
    rng = random.Random(f"projects-{account.seed}")
    return [f"project_{rng.getrandbits(64):016x}" for _ in PROJECTS]


def _humans(account: DemoAccount) -> list[DemoUser]:
    return [u for u in account.user_list if not u.is_api_key]


def _members(account: DemoAccount, now: datetime) -> list[dict[str, Any]]:
    cost, cap = used(account, now), default_cap(account)
    members = []
    for index, user in enumerate(_humans(account)):
        mine = cap
        if index == 0:
            mine = allowance(account)
        elif index == 1:
            mine = _round_up(_expected(account, user) * 1.05, 1000)
        members.append({"id": user.id, "email": user.email or f"{user.id}@studio.example",
                        "role": "admin" if index == 0 else "member", "createdAt": CREATED,
                        "updatedAt": CREATED, "consumption": round(cost * _share(account, user), 2),
                        "maxConsumption": mine})
    return members


def _keys(account: DemoAccount, now: datetime) -> list[dict[str, Any]]:
    now = _utc(now)
    start, cost, cap = billing_period(now)[0], used(account, now), default_cap(account)
    keys = []
    for index, user in enumerate(u for u in account.user_list if u.is_api_key):
        mine = _round_up(_expected(account, user) * 1.1, 1000) if index == 0 else cap
        last = now.replace(second=0, microsecond=0) - timedelta(minutes=7 * index)
        keys.append({"id": user.id, "apiKeyId": user.api_key_id or f"api_{user.id}",
                     "name": user.full_name, "apiKeyStatus": "active", "scope": "team",
                     "role": KEY_ROLE, "createdAt": CREATED, "updatedAt": CREATED,
                     "consumption": round(cost * _share(account, user), 2),
                     "maxConsumption": mine, "lastUsedAt": _iso(max(last, start))})
    rng = random.Random(f"keys-{account.seed}")
    old, unused = (rng.getrandbits(64) for _ in range(2))
    keys.append({"id": f"apiu_{old:016x}", "apiKeyId": f"api_{old:016x}",
                 "name": "Old build server", "apiKeyStatus": "inactive", "scope": "team",
                 "role": KEY_ROLE, "createdAt": CREATED, "updatedAt": _iso(start),
                 "consumption": 0.0, "maxConsumption": cap,
                 "lastUsedAt": _iso(start - timedelta(days=12))})
    project = _project_ids(account)[0]
    keys.append({"id": f"apiu_{unused:016x}", "apiKeyId": f"api_{unused:016x}",
                 "name": "Engine plugin", "apiKeyStatus": "active", "scope": "project",
                 "ownerId": project, "projects": [{"projectId": project, "role": "editor"}],
                 "createdAt": CREATED, "updatedAt": CREATED, "consumption": 0.0,
                 "maxConsumption": cap})
    return keys


def _team_projects(account: DemoAccount) -> list[dict[str, Any]]:
    return [{"id": pid, "name": name, "createdAt": CREATED, "updatedAt": CREATED}
            for pid, (name, _) in zip(_project_ids(account), PROJECTS, strict=True)]


def _team(account: DemoAccount) -> dict[str, Any]:
    """The fields ``GET /teams`` and ``GET /teams/{id}`` share."""
    return {"id": DEMO_TEAM_ID, "name": DEMO_TEAM_NAME, "plan": DEMO_PLAN, "type": "shared",
            "createdAt": CREATED, "updatedAt": CREATED, "projects": _team_projects(account),
            "defaultUserMaxConsumption": default_cap(account)}


def teams_body(account: DemoAccount) -> dict[str, Any]:
    """``GET /teams``: the one team the demo key belongs to."""
    keys = sum(1 for u in account.user_list if u.is_api_key) + 2
    context = {"userRole": "key", "usersCount": len(_humans(account)), "keysCount": keys,
               "invitationsCount": 0}
    return {"teams": [{**_team(account), "context": context}]}


def limits_body(account: DemoAccount, now: datetime) -> dict[str, Any]:
    """``GET /teams/{id}/limits``: the billing period containing *now*, the allowance,
    the CU used so far, and the prepaid packs (see the module's docstring)."""
    now = _utc(now)
    start, end = billing_period(now)
    soon = now.replace(hour=PERIOD_HOUR, minute=0, second=0, microsecond=0) + timedelta(days=5)
    if soon - now > timedelta(days=5):
        soon -= timedelta(days=1)  # before 09:00: tomorrow's morning + 4 days
    packs = [  # (amount, remaining, created, updated, expiration)
        (10000, 4000, soon - timedelta(days=90), start, soon),
        (25000, 18000, start - timedelta(days=20), start, end + timedelta(days=60)),
        (5000, 2500, start - timedelta(days=100), start - timedelta(days=40),
         start - timedelta(days=10)),
        (5000, 0, start - timedelta(days=30), start, end + timedelta(days=30)),
    ]
    humans = len(_humans(account))
    keys = teams_body(account)["teams"][0]["context"]["keysCount"]
    return {
        "plan": DEMO_PLAN,
        "period": {"start": _iso(start), "end": _iso(end)},
        "limits": {"creativeUnits": allowance(account), "apiKeys": 20, "seats": max(25, humans),
                   "defaultSeats": 5, "projects": 20, "models": 500, "collections": 500,
                   "canvasAssets": 200, "canvasAssetLayers": 50, "downloadAssets": 10000,
                   "downloadModel": 100, "inferenceBatchSize": 16, "maxCooldown": 60,
                   "minCooldown": 5, "maxTrainingDatasets": 20, "OTPSessions": 5,
                   "parallelCustomJobs": 4, "parallelInferences": 8, "parallelTraining": 2,
                   "parallelWorkflowRuns": 4, "premiumGenerationSamples": 1000,
                   "scalingFactor": 1, "snapshotsRetention": 30, "upload": 10000},
        "values": {"creativeUnits": used(account, now), "apiKeys": keys, "seats": humans,
                   "projects": len(PROJECTS), "collections": 12, "canvasAssets": 37},
        "oneShotCreativeUnits": [
            {"amount": amount, "remaining": remaining, "createdAt": _iso(created),
             "updatedAt": _iso(updated), "expiration": _iso(expiration)}
            for amount, remaining, created, updated, expiration in packs],
    }


def team_body(account: DemoAccount, now: datetime) -> dict[str, Any]:
    """``GET /teams/{id}``: statuses, the default cap, keys and members with their CU
    this billing period and their effective caps."""
    return {"team": {
        **_team(account), "paymentStatus": "succeeded", "subscriptionStatus": "active",
        "keys": _keys(account, now), "users": _members(account, now), "invitations": [],
        "searchHost": "search.demo.example",
        "searchIndexes": {kind: {"private": f"{DEMO_TEAM_ID}-{kind}-private",
                                 "public": f"public-{kind}"}
                          for kind in ("assets", "models", "workflows")},
        "ipDetectionEnforcement": "disabled",
    }}


def _project(account: DemoAccount, now: datetime, index: int) -> dict[str, Any]:
    name, share = PROJECTS[index]
    humans = _humans(account)[:2]
    project: dict[str, Any] = {
        "id": _project_ids(account)[index], "name": name, "teamId": DEMO_TEAM_ID,
        "createdAt": CREATED, "updatedAt": CREATED, "privacyMode": index == 2,
        "consumption": round(used(account, now) * share, 2),
        "users": [{"id": u.id, "email": u.email or f"{u.id}@studio.example",
                   "role": "admin" if i == 0 else "editor", "createdAt": CREATED,
                   "updatedAt": CREATED} for i, u in enumerate(humans)],
        "keys": [],
    }
    if index == 0:  # the project-scoped key, as a project lists it: with its role there
        key = _keys(account, now)[-1]
        project["keys"].append({**{k: key[k] for k in _PROJECT_KEY_FIELDS}, "role": "editor"})
    if index == CAPPED_PROJECT:
        project["maxConsumption"] = _round_up(allowance(account) * 0.3, 1000)
    return project


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"projects:{offset}".encode()).decode().rstrip("=")


def _offset(token: str) -> int:
    """The offset a token of :func:`_token` carries; ValueError for any other string."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"invalid paginationToken {token!r}") from None
    prefix, _, number = text.partition(":")
    if prefix != "projects" or not number.isdigit() or int(number) >= len(PROJECTS):
        raise ValueError(f"invalid paginationToken {token!r}")
    return int(number)


def projects_page(account: DemoAccount, now: datetime, page_size: int | None = None,
                  token: str | None = None) -> dict[str, Any]:
    """A page of ``GET /projects``: at most :data:`MAX_PAGE_SIZE` projects whatever
    *page_size* asks, from the one *token* points at; ``nextPaginationToken`` on every
    page but the last. ValueError for a *page_size* below 1 or a token it never gave."""
    if page_size is not None and page_size < 1:
        raise ValueError(f"invalid pageSize {page_size}")
    start = _offset(token) if token else 0
    stop = min(start + min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE), len(PROJECTS))
    page: dict[str, Any] = {"projects": [_project(account, now, i) for i in range(start, stop)]}
    if stop < len(PROJECTS):
        page["nextPaginationToken"] = _token(stop)
    return page
