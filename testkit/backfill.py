"""What the backfill's tests share: two accounts with one demo key, the moment a run
happens, the target labels of its series, and aware UTC datetimes in one call."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from exporter.config.load import build_settings
from exporter.config.settings import Settings

KEY, SECRET = "key-backfill", "secret-backfill-value"
NOW = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)  # August: 111 days back
LABELS = {"job": "scenario-exporter", "instance": "exporter:10097"}


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=timezone.utc)


def two_accounts(tmp_path: Path, **flags: str) -> Settings:
    """Accounts ``studio`` (with a budget) and ``mobile``, both with KEY and SECRET, written
    as a config file in *tmp_path*; *flags* as on the command line (calendar months unless
    they say ``period``)."""
    flags = {"period": "month", **flags}
    config = tmp_path / "accounts.yml"
    config.write_text(f"""\
accounts:
  - name: studio
    api_key: {KEY}
    api_secret: {SECRET}
    budget_creative_units: 50000
  - name: mobile
    api_key: {KEY}
    api_secret: {SECRET}
""", encoding="utf-8")
    return build_settings(flags, {}, config)
