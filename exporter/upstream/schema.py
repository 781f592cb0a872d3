"""Response models of ``GET /v1/usages`` (pydantic v2, camelCase aliases).

Tolerant where upstream drifts: unknown fields are ignored, enum-like values
(``usageName``, ``kind``, ``label``, ``granularity``) are plain strings, missing
sections and ``null`` lists are empty, missing or ``null`` numbers are 0, and
numbers may come as JSON numbers or numeric strings. Strict where it matters: a
number field holding anything else (``"abc"``, ``true``, ``NaN``) makes the whole
response invalid rather than a silent 0, because a wrong bill is worse than a gap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    StrictFloat,
    StrictInt,
    StringConstraints,
    with_config,
)
from pydantic.alias_generators import to_camel
from pydantic_core import CoreSchema, core_schema

# pydantic needs typing_extensions.TypedDict before Python 3.12 (a dependency of pydantic).
from typing_extensions import NotRequired, TypedDict

UNKNOWN_ID = "unknown"


# A number as upstream sends it: a JSON number or a numeric string ("12", "3.5").
# Validation stays inside pydantic-core (no Python call per point: responses
# reach 6 MB); booleans, non-numeric strings, NaN and infinities are rejected.
# A numeric string, which upstream rarely sends, is turned into a float by one
# float() call, so that the sums add what they get without converting it. A JSON
# integer beyond the float range stays an int: the sums report it as invalid.
_NUMERIC_TEXT = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
if TYPE_CHECKING:
    Number = float | None  # an int is a float to the type checker
else:
    Number = (StrictFloat | StrictInt
              | Annotated[str, StringConstraints(pattern=_NUMERIC_TEXT), AfterValidator(float)]
              | None)


def _as_python(value: Any) -> Any:
    return value


# Ids and enum-like names, exported as they come (numbers are turned into text).
# The before-validator makes pydantic-core hand the value over as a Python object,
# so that a number is turned into text by Python (``1.0`` -> "1.0", ``1e20`` ->
# "1e+20"), not by pydantic-core's JSON mode ("1", "100000000000000000000"). It
# costs one call per field of a row or entity, never per point.
Identifier = Annotated[str | None, BeforeValidator(_as_python)]
OptionalText = Annotated[str | None, BeforeValidator(_as_python)]
# The time of a point: validated like OptionalText (text, a number or null), but
# never read, so a number there may become text by pydantic-core's rules, without
# a Python call for each of the ~51,000 points.
PointTime = str | None


def identifier(value: str | None) -> str:
    """An id as a label value; missing ones become ``unknown`` (an empty label is no label)."""
    return value if value else UNKNOWN_ID


class _NullAsEmpty:
    """A section or list that upstream may also send as ``null``, which means empty.

    Validated as ``X | None``, then ``None`` becomes ``empty()``. Not a
    :class:`BeforeValidator`: pydantic-core hands a before-validator its input as
    Python objects, so one on a section turns all of its JSON into Python objects
    (what ``json.loads`` does) before validating them again: on a 6 MB response
    that was half of the validation time. An after-validator gets the validated
    value; what is inside is validated straight from the JSON.
    """

    def __init__(self, empty: Callable[[], Any]) -> None:
        self._empty = empty

    def _or_empty(self, value: Any) -> Any:
        return self._empty() if value is None else value

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            self._or_empty, core_schema.nullable_schema(handler(source)))


_CONFIG = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore",
                     allow_inf_nan=False, coerce_numbers_to_str=True)


class _Model(BaseModel):
    model_config = ConfigDict(**_CONFIG, frozen=True)


T = TypeVar("T")
# A list that upstream may also send as null.
Rows = Annotated[list[T], _NullAsEmpty(list)]
# The points of a row, as a tuple: once its dicts are seen to hold no container,
# the cyclic GC stops tracking it, where a list is scanned at every collection.
Points = Annotated[tuple[T, ...], _NullAsEmpty(tuple)]

# Rows, entities and points (about 3,000 rows and 64,000 points in an 8 MB
# response) are validated by pydantic-core into plain dicts, not model
# instances: same config, same field types, so the same values are accepted and
# rejected. A key is missing when upstream left it out; :func:`~exporter.upstream.summing.summarize`
# reads ``row.get(...)``. A dict holding only strings and numbers is not tracked
# by the cyclic GC, where a model instance is, with its ``__dict__`` and set of
# fields: three objects per row that outlive the parse made every large refresh
# pay a full collection of the heap (25 ms of 160 at 3,000 models, measured by
# ``python -m bench.refresh timing``). Only the response and its ``entities``
# section stay models.


@with_config(_CONFIG)
class UsagePoint(TypedDict):
    """One bucket of a ``usages`` row; ``value`` and ``apiKey`` are numeric strings.

    ``cost``, ``discount`` and their API-key parts are the Creative Units of the
    action in the bucket (SDK 2.4); an older upstream does not send them.
    """

    time: NotRequired[PointTime]
    value: NotRequired[Number]
    api_key: NotRequired[Number]
    cost: NotRequired[Number]
    discount: NotRequired[Number]
    api_key_cost: NotRequired[Number]
    api_key_discount: NotRequired[Number]


@with_config(_CONFIG)
class UsageRow(TypedDict, total=False):
    usage_name: Identifier
    granularity: OptionalText
    points: Points[UsagePoint]


@with_config(_CONFIG)
class ModelPoint(TypedDict):
    time: NotRequired[PointTime]
    cost: NotRequired[Number]
    discount: NotRequired[Number]
    api_key_cost: NotRequired[Number]
    api_key_discount: NotRequired[Number]
    jobs: NotRequired[Number]


@with_config(_CONFIG)
class ModelUsageRow(TypedDict, total=False):
    model_id: Identifier
    points: Points[ModelPoint]


@with_config(_CONFIG)
class CountPoint(TypedDict):
    time: NotRequired[PointTime]
    count: NotRequired[Number]
    count_api_key: NotRequired[Number]


@with_config(_CONFIG)
class AssetUsageRow(TypedDict, total=False):
    kind: Identifier
    points: Points[CountPoint]


@with_config(_CONFIG)
class NsfwUsageRow(TypedDict, total=False):
    label: Identifier
    points: Points[CountPoint]


@with_config(_CONFIG)
class QualityGateUsageRow(TypedDict, total=False):
    """One verdict bucket of the Quality Gate (``total``, ``pass``, ``warn``, ``fail``)."""

    verdict: Identifier
    points: Points[CountPoint]


@with_config(_CONFIG)
class ConsumptionRow(TypedDict, total=False):
    """Creative Units consumed by one user over the whole window (already a sum).

    ``costDetails`` (SDK 2.4: an object of CU per billing action, included in
    ``value``) is taken as it comes and read by the summing: anything but an
    object of numbers there leaves the rest of the response valid.
    """

    user_id: Identifier
    value: Number
    discount: Number
    total: Number
    cost_details: Any


@with_config(_CONFIG)
class ModelEntity(TypedDict, total=False):
    id: Identifier
    name: OptionalText
    short_description: OptionalText


@with_config(_CONFIG)
class UserEntity(TypedDict, total=False):
    id: Identifier
    is_api_key: bool | None
    api_key_id: OptionalText
    api_key_status: OptionalText
    email: OptionalText
    full_name: OptionalText


class Entities(_Model):
    models: Rows[ModelEntity] = Field(default_factory=list)
    users: Rows[UserEntity] = Field(default_factory=list)


class UsageResponse(_Model):
    """The sections of ``GET /v1/usages`` that the exporter reads; all optional."""

    usages: Rows[UsageRow] = Field(default_factory=list)
    model_usages: Rows[ModelUsageRow] = Field(default_factory=list)
    asset_usages: Rows[AssetUsageRow] = Field(default_factory=list)
    nsfw_usages: Rows[NsfwUsageRow] = Field(default_factory=list)
    consumption: Rows[ConsumptionRow] = Field(default_factory=list)
    quality_gate_usages: Rows[QualityGateUsageRow] = Field(default_factory=list)
    entities: Annotated[Entities, _NullAsEmpty(Entities)] = Field(default_factory=Entities)
