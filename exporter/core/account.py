"""One Scenario account as configured: its name, credentials and options.

Credentials are read from their files at each use, so that a rotated
Kubernetes Secret applies without a restart; they never appear in a repr.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from exporter.core.logs import mask

DEFAULT_API_URL = "https://api.cloud.scenario.com/v1"
DEFAULT_CURRENCY = "USD"
# An ISO 4217 code: the currency label of scenario_creative_unit_price.
CURRENCY_PATTERN = r"^[A-Z]{3}$"
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_api_url(value: str) -> str:
    """An http(s) base URL of the API, without its trailing slash.

    Credentials in the URL are refused: URLs are logged, credentials never.
    """
    match = re.match(r"^https?://([^/\s]+)", value)
    if not match:
        raise ValueError("must be an http(s) URL such as " + DEFAULT_API_URL)
    if "@" in match.group(1):
        raise ValueError("must not hold credentials (user:password@); "
                         "they belong in api_key and api_secret")
    return value.rstrip("/")


def read_secret_file(path: Path) -> str:
    """Read a secret from a file (Kubernetes mounts), without its trailing newline."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not secret:
        raise ValueError(f"{path} is empty")
    return secret


class AccountConfig(BaseModel):
    """One set of Scenario credentials, watched as one ``account`` label value."""

    # A validation error shows its input, which holds the secret (a model-level error
    # shows the whole dict): keep inputs out of errors, whoever prints them.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str
    api_key: str | None = Field(default=None, min_length=1)
    api_key_file: Path | None = None
    api_secret: SecretStr | None = None
    api_secret_file: Path | None = None
    project_ids: tuple[str, ...] = ()
    # The team whose usage is read (sent as teamId); None: the key's default team.
    team_id: str | None = Field(default=None, min_length=1)
    # Users to restrict usage to (sent as userIds); empty: the whole team.
    user_ids: tuple[str, ...] = ()
    budget_creative_units: float | None = Field(default=None, ge=0)
    # This account's API base URL (a regional endpoint, a forward proxy); None: --scenario.api-url.
    api_url: str | None = None
    # The contract price of one Creative Unit; None: --price.per-creative-unit (or no price).
    price_per_creative_unit: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    price_currency: str | None = Field(default=None, pattern=CURRENCY_PATTERN)

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_api_url(value)

    @field_validator("name")
    @classmethod
    def _name_is_a_label_value(cls, value: str) -> str:
        if not ACCOUNT_NAME.match(value):
            raise ValueError("must be 1-63 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("project_ids", "user_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @model_validator(mode="after")
    def _one_secret_source(self) -> AccountConfig:
        if (self.api_key is None) == (self.api_key_file is None):
            raise ValueError("give exactly one of api_key or api_key_file")
        if (self.api_secret is None) == (self.api_secret_file is None):
            raise ValueError("give exactly one of api_secret or api_secret_file")
        for name, path in (("api_key_file", self.api_key_file),
                           ("api_secret_file", self.api_secret_file)):
            if path is not None:
                try:
                    read_secret_file(path)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return self

    def key(self) -> str:
        """The API key; read from its file on every call, like the secret, so that a
        rotated key/secret pair (a Kubernetes Secret volume) applies without a restart."""
        if self.api_key is not None:
            return self.api_key
        assert self.api_key_file is not None
        return read_secret_file(self.api_key_file)

    def secret(self) -> str:
        """The API secret; read from its file on every call so that rotated secrets apply."""
        if self.api_secret is not None:
            return self.api_secret.get_secret_value()
        assert self.api_secret_file is not None
        return read_secret_file(self.api_secret_file)

    def __repr__(self) -> str:
        # pydantic masks SecretStr already; the key is an identifier, not a secret,
        # but keep it short in logs anyway.
        key = mask(self.api_key) if self.api_key is not None else None
        return (f"AccountConfig(name={self.name!r}, api_key={key!r}, "
                f"api_key_file={str(self.api_key_file) if self.api_key_file else None!r}, "
                f"api_secret={'**********' if self.api_secret else None}, "
                f"api_secret_file={str(self.api_secret_file) if self.api_secret_file else None!r},"
                f" project_ids={self.project_ids!r}, team_id={self.team_id!r}, "
                f"user_ids={self.user_ids!r}, "
                f"budget_creative_units={self.budget_creative_units!r}, "
                f"api_url={self.api_url!r}, "
                f"price_per_creative_unit={self.price_per_creative_unit!r}, "
                f"price_currency={self.price_currency!r})")

    __str__ = __repr__
