"""What the team endpoints say of one account: the plan, prepaid units, caps, and which
endpoints answer.

Plain frozen data, standard library only, like :mod:`exporter.core.values`: the
team reader (:mod:`exporter.upstream.team`) makes it, the live team refresher
holds it, the team families (:mod:`exporter.metrics.team`) read it. Every figure
upstream left out, or sent negative or not a number, is ``None``: it is not
exported, and the rest is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# The ``endpoint`` label of scenario_exporter_endpoint_up, in the order they are read.
USAGES = "usages"
TEAM = "team"  # GET /teams/{teamId}, and GET /teams to find the team
TEAM_LIMITS = "team_limits"
PROJECTS = "projects"
TEAM_ENDPOINTS = (TEAM_LIMITS, TEAM, PROJECTS)


@dataclass(frozen=True)
class PrepaidPack:
    """One pack of prepaid ("one-shot") Creative Units."""

    remaining: float
    expires: float | None  # wall-clock seconds; None: upstream gave no valid expiry


@dataclass(frozen=True)
class PlanLimits:
    """``GET /teams/{teamId}/limits``: the billing period, the allowance and what is used."""

    period_start: float | None
    period_end: float | None
    plan: str | None = None
    allowance: float | None = None  # the plan's Creative Units for the billing period
    used: float | None = None  # Creative Units used so far in the billing period
    packs: tuple[PrepaidPack, ...] = ()


@dataclass(frozen=True)
class Prepaid:
    """The prepaid units usable at one moment, and the next expiry among them."""

    remaining: float
    next_expiry: float | None
    expiring_next: float | None


def prepaid_at(packs: tuple[PrepaidPack, ...], now: float) -> Prepaid:
    """What *packs* hold at wall-clock *now*: units left in packs not expired, the
    earliest expiry of a pack with units left, and the units that expire then.

    A pack without a valid expiry counts as units left that never expire.
    """
    usable = [p for p in packs if p.remaining > 0 and (p.expires is None or p.expires > now)]
    expiries = [p.expires for p in usable if p.expires is not None]
    if not expiries:
        return Prepaid(sum(p.remaining for p in usable), None, None)
    first = min(expiries)
    return Prepaid(sum(p.remaining for p in usable), first,
                   sum(p.remaining for p in usable if p.expires == first))


@dataclass(frozen=True)
class ApiKey:
    """One API key of the team (``team.keys[]``); its ``member_id`` is the ``user_id``
    that usages report for it."""

    member_id: str
    name: str
    status: str
    scope: str
    consumption: float | None = None
    max_consumption: float | None = None
    last_used: float | None = None


@dataclass(frozen=True)
class Member:
    """One member of the team (``team.users[]``): CU this billing period and the cap."""

    consumption: float | None = None
    max_consumption: float | None = None


@dataclass(frozen=True)
class TeamDetails:
    """``GET /teams/{teamId}``: names, statuses, and per key and member the CU and caps.

    ``keys`` by API key id, ``members`` by user id, each already cut to the
    user cap (the rest summed under ``__other__``).
    """

    team_id: str
    name: str
    plan: str
    payment_status: str
    subscription_status: str
    keys: Mapping[str, ApiKey] = field(default_factory=dict)
    members: Mapping[str, Member] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    """One project of the team (``GET /projects``): CU this billing period and its cap."""

    name: str
    consumption: float | None = None
    max_consumption: float | None = None


@dataclass(frozen=True)
class TeamView:
    """What a scrape sees of one account's team endpoints; immutable, read without locks.

    Each endpoint's figures are its last good answer (``None``: never had one),
    with the wall-clock time it came; ``endpoints`` says, per endpoint called,
    whether its last call succeeded.
    """

    account: str
    version: int = 0
    team_id: str | None = None
    # When the key sees several teams and none is configured: their ids, to choose from.
    candidates: tuple[str, ...] = ()
    endpoints: Mapping[str, bool] = field(default_factory=dict)
    limits: PlanLimits | None = None
    limits_at: float | None = None
    details: TeamDetails | None = None
    details_at: float | None = None
    projects: Mapping[str, Project] | None = None
    projects_at: float | None = None
