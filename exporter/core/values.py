"""The values every layer shares: totals, snapshots, fetch results, views.

Plain frozen data and exceptions, standard library only: the client produces
them, the scheduler holds them, the ledger folds them and the collector reads
them, and none of those needs to import another to know their shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from exporter.core.period import PeriodWindow

if TYPE_CHECKING:  # a pydantic model: only its type is needed here
    from exporter.core.account import AccountConfig


class ModelTotals(NamedTuple):
    """One model's sums over a window, in Creative Units (discounts as magnitudes)."""

    cost: float
    cost_api_key: float
    discount: float
    discount_api_key: float
    jobs: float


class CountTotals(NamedTuple):
    """Assets of one kind, or NSFW-flagged assets of one label, over a window."""

    assets: float
    assets_api_key: float


class UsageTotals(NamedTuple):
    """One usage name's sum over a window, in its own unit."""

    value: float
    api_key: float


class UserTotals(NamedTuple):
    """One user's consumption over a window, in Creative Units."""

    consumption: float
    discount: float


# Each kind's first field is what it is ranked by (spend, count): see exporter.core.ledger.
Totals = ModelTotals | CountTotals | UsageTotals | UserTotals
AnyTotals = TypeVar("AnyTotals", ModelTotals, CountTotals, UsageTotals, UserTotals)


def add_totals(first: AnyTotals, second: AnyTotals) -> AnyTotals:
    """The field-by-field sum of two totals of the same kind."""
    return type(first)._make(a + b for a, b in zip(first, second, strict=True))


@dataclass(frozen=True)
class UserIdentity:
    """What ``entities.users`` says about one user id."""

    is_api_key: bool | None = None
    name: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class UsageSnapshot:
    """Sums of one account's upstream data over one window."""

    window: PeriodWindow
    models: Mapping[str, ModelTotals] = field(default_factory=dict)
    assets: Mapping[str, CountTotals] = field(default_factory=dict)
    nsfw: Mapping[str, CountTotals] = field(default_factory=dict)
    usages: Mapping[str, UsageTotals] = field(default_factory=dict)
    users: Mapping[str, UserTotals] = field(default_factory=dict)
    model_names: Mapping[str, str] = field(default_factory=dict)
    user_identities: Mapping[str, UserIdentity] = field(default_factory=dict)


SECTIONS = ("models", "assets", "nsfw", "usages", "users")


@dataclass(frozen=True)
class FetchResult:
    """A summed window, how many HTTP calls it took and the bytes they carried."""

    snapshot: UsageSnapshot
    requests: int
    body_bytes: int


@dataclass(frozen=True)
class AccountView:
    """What a scrape sees of one account; immutable, so it can be read without locks."""

    account: AccountConfig
    version: int = 0
    snapshot: UsageSnapshot | None = None
    folded: Mapping[str, int] = field(default_factory=dict)
    up: bool = False
    attempted: bool = False
    last_attempt: float | None = None  # wall-clock seconds
    last_success: float | None = None
    last_error: str | None = None
    refresh_interval: float | None = None  # seconds between refreshes, once known
