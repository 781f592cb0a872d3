"""The fixture account of the golden tests: ``tests/data/usages_full.json`` summed at a
fixed moment, served as account ``studio`` beside an account ``broken`` that never had data.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import SecretStr

from exporter.core.account import AccountConfig
from exporter.core.ledger import PeriodLedger
from exporter.core.period import PeriodWindow
from exporter.core.values import AccountView
from exporter.upstream.schema import UsageResponse
from exporter.upstream.summing import summarize
from testkit.repo import REPO_ROOT

DATA = REPO_ROOT / "tests" / "data"
NOW = datetime(2026, 11, 3, 12, 0, tzinfo=timezone.utc)
WINDOW = PeriodWindow(datetime(2026, 11, 1, tzinfo=timezone.utc), NOW)


def account(name: str, budget: float | None = None) -> AccountConfig:
    return AccountConfig(name=name, api_key="key-" + name, api_secret=SecretStr("secret"),
                         budget_creative_units=budget)


def fixture_views() -> list[AccountView]:
    """Account 'studio' served from the fixture (caps of 1 model and 2 users fold two
    models and one user into __other__); account 'broken' has never had data."""
    response = UsageResponse.model_validate_json((DATA / "usages_full.json").read_bytes())
    result = PeriodLedger(max_models=1, max_users=2).apply(summarize(response, WINDOW))
    studio = AccountView(account("studio", 5000.0), 1, result.snapshot, result.folded, up=True,
                         attempted=True, last_attempt=NOW.timestamp(),
                         last_success=NOW.timestamp())
    broken = AccountView(account("broken"), 1, None, {}, up=False, attempted=True,
                         last_attempt=NOW.timestamp(), last_error="HTTP 401")
    return [studio, broken]


OPENMETRICS = "application/openmetrics-text; version=1.0.0"
