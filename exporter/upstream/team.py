"""The team endpoints: which team a key sees, its plan and prepaid units, keys, members
and projects, read as the SDK (``scenario-sdk`` 2.4) documents them.

- ``GET /teams`` (``teams.list``): the teams the key belongs to;
- ``GET /teams/{teamId}/limits`` (``teams.retrieve_limits``): the billing period,
  the plan's allowance, CU used, prepaid packs;
- ``GET /teams/{teamId}`` (``teams.retrieve``): per API key and member, CU this
  billing period and the cap;
- ``GET /projects`` (``projects.list``): per project, CU this billing period and the
  cap, in pages that may hold fewer than asked, followed to the last one.

The models are tolerant where the usages' are strict: these are gauges of
upstream's own figures, so one figure that is missing, negative or not a number
is left out (``None``) and the rest is served, where a usage sum must be whole.
A body that is not the schema at all (not JSON, no ``team``, no ``period``) is an
invalid response: the endpoint is down, the others go on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from exporter.core.account import AccountConfig
from exporter.core.errors import InvalidResponse, UpstreamError
from exporter.core.period import parse_iso
from exporter.core.team import ApiKey, Member, PlanLimits, PrepaidPack, Project, TeamDetails
from exporter.upstream.client import RequestPermit, UsageClient

OTHER_ID = "__other__"
PAGE_SIZE = 100  # the SDK's maximum for projects.list
MAX_PAGES = 100  # a paginationToken that never ends must not hold a refresh for ever
T = TypeVar("T")


def _figure(value: Any) -> float | None:
    """A figure as upstream sends it (number or numeric text), or None when it is not a
    finite, non-negative number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _moment(value: Any) -> float | None:
    """An ISO 8601 date as wall-clock seconds, or None when it is missing or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return parse_iso(value).timestamp()
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


Figure = Annotated[float | None, BeforeValidator(_figure)]
Moment = Annotated[float | None, BeforeValidator(_moment)]
Text = Annotated[str | None, BeforeValidator(_text)]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore",
                              frozen=True)


def _rows(model: type[T]) -> Any:
    """A list of *model* in which an entry that is not an object is dropped."""
    def keep_objects(value: Any) -> Any:
        return [item for item in value if isinstance(item, dict)] \
            if isinstance(value, list) else value
    return Annotated[list[model], BeforeValidator(keep_objects)]  # type: ignore[valid-type]


class _TeamEntry(_Model):
    id: str
    name: Text = None


class _Teams(_Model):
    teams: _rows(_TeamEntry)  # type: ignore[valid-type]


class _Period(_Model):
    start: Moment = None
    end: Moment = None


class _CreativeUnits(_Model):
    creative_units: Figure = None


class _Pack(_Model):
    remaining: Figure = None
    expiration: Moment = None


class _Limits(_Model):
    plan: Text = None
    period: _Period
    limits: _CreativeUnits | None = None
    values: _CreativeUnits | None = None
    one_shot_creative_units: _rows(_Pack) | None = None  # type: ignore[valid-type]


class _Key(_Model):
    id: str
    api_key_id: str
    name: Text = None
    api_key_status: Text = None
    scope: Text = None
    consumption: Figure = None
    max_consumption: Figure = None
    last_used_at: Moment = None


class _User(_Model):
    id: str
    consumption: Figure = None
    max_consumption: Figure = None


class _Team(_Model):
    id: str
    name: Text = None
    plan: Text = None
    payment_status: Text = None
    subscription_status: Text = None
    keys: _rows(_Key) = Field(default_factory=list)  # type: ignore[valid-type]
    users: _rows(_User) = Field(default_factory=list)  # type: ignore[valid-type]


class _TeamAnswer(_Model):
    team: _Team


class _Project(_Model):
    id: str
    name: Text = None
    team_id: Text = None
    consumption: Figure = None
    max_consumption: Figure = None


class _Projects(_Model):
    projects: _rows(_Project) = Field(default_factory=list)  # type: ignore[valid-type]
    next_pagination_token: Text = None


def read_teams(body: bytes) -> list[tuple[str, str]]:
    """``GET /teams``: (id, name) of each team the key sees."""
    return [(team.id, team.name or team.id) for team in _Teams.model_validate_json(body).teams]


def read_limits(body: bytes) -> PlanLimits:
    """``GET /teams/{teamId}/limits`` as :class:`PlanLimits`; a pack without units left
    or with an unreadable figure is left out."""
    answer = _Limits.model_validate_json(body)
    packs = tuple(PrepaidPack(pack.remaining, pack.expiration)
                  for pack in answer.one_shot_creative_units or ()
                  if pack.remaining is not None)
    period = answer.period
    if period.start is not None and period.end is not None and period.end <= period.start:
        raise InvalidResponse("invalid response: period: the end is not after the start")
    return PlanLimits(period.start, period.end, answer.plan,
                      answer.limits.creative_units if answer.limits else None,
                      answer.values.creative_units if answer.values else None, packs)


def read_team(body: bytes, max_ids: int) -> TeamDetails:
    """``GET /teams/{teamId}`` as :class:`TeamDetails`, at most *max_ids* keys and
    members each; the rest, the least consuming, summed under ``__other__``."""
    team = _TeamAnswer.model_validate_json(body).team
    keys = {key.api_key_id: ApiKey(key.id, key.name or "", key.api_key_status or "",
                                   key.scope or "", key.consumption, key.max_consumption,
                                   key.last_used_at)
            for key in team.keys}
    members = {user.id: Member(user.consumption, user.max_consumption) for user in team.users}
    return TeamDetails(team.id, team.name or "", team.plan or "", team.payment_status or "",
                       team.subscription_status or "",
                       _capped(keys, max_ids, lambda kept: ApiKey(
                           OTHER_ID, OTHER_ID, "", "", _sum(k.consumption for k in kept))),
                       _capped(members, max_ids,
                               lambda kept: Member(_sum(m.consumption for m in kept))))


def read_projects_page(body: bytes) -> tuple[list[tuple[str, str | None, Project]], str | None]:
    """One page of ``GET /projects``: (id, team id, project) per project, and the next
    page's token (None: the last page)."""
    page = _Projects.model_validate_json(body)
    return ([(p.id, p.team_id, Project(p.name or "", p.consumption, p.max_consumption))
             for p in page.projects], page.next_pagination_token)


V = TypeVar("V", ApiKey, Member, Project)


def _capped(items: dict[str, V], limit: int, fold: Callable[[list[V]], V]) -> dict[str, V]:
    if len(items) <= limit:
        return items
    ranked = sorted(items.items(), key=lambda kv: (-(kv[1].consumption or 0.0), kv[0]))
    kept = dict(ranked[:limit - 1])
    kept[OTHER_ID] = fold([item for _, item in ranked[limit - 1:]])
    return kept


def _sum(values: Any) -> float:
    return sum(value or 0.0 for value in values)


class TeamReader:
    """The four team endpoints of one account over the shared client.

    Each call asks *permit* first (the account's hourly cap) and raises
    :class:`~exporter.core.errors.UpstreamError` as the usages' calls do.
    """

    def __init__(self, client: UsageClient, account: AccountConfig, max_ids: int) -> None:
        self._client = client
        self._account = account
        self._max_ids = max_ids

    def teams(self, permit: RequestPermit | None = None) -> list[tuple[str, str]]:
        return self._client.get_json(self._account, "/teams", {}, read_teams, permit)

    def limits(self, team_id: str, permit: RequestPermit | None = None) -> PlanLimits:
        return self._client.get_json(self._account, f"/teams/{_segment(team_id)}/limits", {},
                                     read_limits, permit)

    def team(self, team_id: str, permit: RequestPermit | None = None) -> TeamDetails:
        return self._client.get_json(self._account, f"/teams/{_segment(team_id)}", {},
                                     lambda body: read_team(body, self._max_ids), permit)

    def projects(self, team_id: str, permit: RequestPermit | None = None,
                 ) -> tuple[dict[str, Project], int]:
        """Every project of *team_id*, following the pages to the last; and the calls made.

        Projects of other teams the key can see are left out; beyond the user
        cap, the least consuming are summed under ``__other__``.
        """
        found: dict[str, Project] = {}
        token: str | None = None
        calls = 0
        while calls < MAX_PAGES:
            params = {"pageSize": str(PAGE_SIZE)}
            if token:
                params["paginationToken"] = token
            rows, token = self._client.get_json(self._account, "/projects", params,
                                                read_projects_page, permit)
            calls += 1
            found.update((project_id, project) for project_id, owner, project in rows
                         if owner in (None, team_id))
            if not token:
                break
        return _capped(found, self._max_ids, lambda kept: Project(
            OTHER_ID, _sum(p.consumption for p in kept))), calls


def _segment(team_id: str) -> str:
    """*team_id* as one path segment (an id never holds '/', but a typo might)."""
    return team_id.replace("/", "%2F")


def read_billing_period(reader: TeamReader, team_id: str | None) -> tuple[float, float] | None:
    """The team's current billing period (start, end), or None when the key cannot
    read it (no scope, several teams, a failure, or a period upstream left out)."""
    try:
        if team_id is None:
            teams = reader.teams()
            if len(teams) != 1:
                return None
            team_id = teams[0][0]
        limits = reader.limits(team_id)
    except UpstreamError:
        return None
    if limits.period_start is None or limits.period_end is None:
        return None
    return limits.period_start, limits.period_end
