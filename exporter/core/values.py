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
    """One usage name's sums over a window: its count in its own unit and, where upstream
    prices the action (SDK 2.4), its Creative Units.

    ``cost`` and ``cost_api_key`` are signed: a negative sum over the period is a
    credit (a refund), served as :attr:`credit`; discounts are magnitudes.
    """

    value: float
    api_key: float
    cost: float
    cost_api_key: float
    discount: float
    discount_api_key: float

    @property
    def credit(self) -> float:
        """The magnitude of a negative cost: CU given back."""
        return -self.cost if self.cost < 0 else 0.0

    @property
    def credit_api_key(self) -> float:
        """The magnitude of a negative API-key cost."""
        return -self.cost_api_key if self.cost_api_key < 0 else 0.0


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


def served_figures(totals: tuple[float, ...]) -> tuple[float, ...]:
    """The figures *totals* (of any kind) is served as: every field as a counter, never
    negative, and a usage name's credits (its negative costs) beside its costs."""
    figures = tuple(max(value, 0.0) for value in totals)
    if isinstance(totals, UsageTotals):
        figures += (totals.credit, totals.credit_api_key)
    return figures


# CU per billing action of one user (``consumption[].costDetails``), over a window.
ActionTotals = Mapping[str, float]


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
    # Verdict buckets of the Quality Gate (SDK 2.4), counted like assets.
    quality_gates: Mapping[str, CountTotals] = field(default_factory=dict)
    # CU per billing action, per user (SDK 2.4): a window figure, like users.
    user_actions: Mapping[str, ActionTotals] = field(default_factory=dict)
    # The usage names whose points carry Creative Units: an older upstream sends
    # none, and then no CU series of a usage name is served.
    priced_usages: frozenset[str] = frozenset()


# The sections of totals per id (user_actions, per user and action, stands apart).
SECTIONS = ("models", "assets", "nsfw", "usages", "users", "quality_gates")


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
    # The end of the period being served (wall-clock seconds); None: the calendar rule's.
    period_end: float | None = None
