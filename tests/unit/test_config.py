"""Configuration: three layers, and one clear line per invalid value (exit 2: the real
command's exit is tested in ``tests/process/test_cli.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config.load import build_settings
from exporter.config.settings import Settings
from exporter.core.durations import format_duration, parse_duration
from exporter.core.errors import ConfigError

CREDS = {"SCENARIO_API_KEY": "key-1", "SCENARIO_API_SECRET": "secret-1"}


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("5m", 300), ("2h", 7200), ("1h30m", 5400), ("1d", 86400), ("500ms", 0.5),
    ("45", 45), (30, 30), ("1.5h", 5400)])
def test_durations_are_prometheus_style(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "m5", "", "-5m", "5 m", "1h-30m", "ten"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_defaults() -> None:
    settings = build_settings({}, CREDS)
    assert settings.listen_address == ":10097"
    assert settings.telemetry_path == "/metrics"
    assert settings.cache_ttl == 300 and settings.cache_max_stale == 7200
    assert settings.period == "auto" and settings.period_anchor_day == 1
    assert settings.api_url == "https://api.cloud.scenario.com/v1"
    assert settings.upstream_timeout == 30 and settings.max_requests_per_hour == 60
    (account,) = settings.accounts
    assert account.name == "default" and account.secret() == "secret-1"
    assert format_duration(settings.cache_ttl) == "5m"


def test_flags_win_over_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("cache:\n  ttl: 10m\n  max-stale: 3h\nperiod: day\n"
                      "upstream:\n  timeout: 12s\n")
    env = {**CREDS, "SCENARIO_EXPORTER_CACHE_TTL": "7m", "SCENARIO_EXPORTER_PERIOD": "month"}
    settings = build_settings({"cache.ttl": "2m"}, env, config)
    assert settings.cache_ttl == 120  # flag
    assert settings.period == "month"  # environment over file
    assert settings.cache_max_stale == 3 * 3600  # file
    assert settings.upstream_timeout == 12


def test_sdk_variables_are_a_fallback() -> None:
    settings = build_settings({}, {"SCENARIO_SDK_API_KEY": "sdk-key",
                                   "SCENARIO_SDK_API_SECRET": "sdk-secret"})
    assert settings.accounts[0].api_key == "sdk-key"
    both = build_settings({}, {**CREDS, "SCENARIO_SDK_API_KEY": "sdk-key"})
    assert both.accounts[0].api_key == "key-1"


def test_secret_from_a_file_is_read_on_every_use(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    settings = build_settings({}, {"SCENARIO_API_KEY": "k",
                                   "SCENARIO_API_SECRET_FILE": str(secret_file)})
    assert settings.accounts[0].secret() == "from-file"
    secret_file.write_text("rotated")
    assert settings.accounts[0].secret() == "rotated"


def test_key_file_is_read_at_start_and_named_when_unreadable(tmp_path: Path) -> None:
    key_file, secret_file = tmp_path / "api-key", tmp_path / "api-secret"
    key_file.write_text("key-one\n")
    secret_file.write_text("secret-one\n")
    env = {"SCENARIO_API_KEY_FILE": str(key_file), "SCENARIO_API_SECRET_FILE": str(secret_file)}
    (account,) = build_settings({}, env).accounts
    assert (account.key(), account.secret()) == ("key-one", "secret-one")
    assert "key-one" not in repr(account)

    with pytest.raises(ConfigError, match=r"^SCENARIO_API_KEY_FILE: cannot read .*/missing"):
        build_settings({}, {**env, "SCENARIO_API_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match=r"^SCENARIO_API_KEY_FILE: set it or SCENARIO_API_KEY"):
        build_settings({}, {**env, "SCENARIO_API_KEY": "key-one"})


def test_several_accounts_from_yaml(tmp_path: Path) -> None:
    secret_file = tmp_path / "b.secret"
    secret_file.write_text("b-secret")
    config = tmp_path / "config.yml"
    config.write_text(f"""
accounts:
  - name: studio-a
    api_key: key-a
    api_secret: a-secret
    project_ids: [proj_1, proj_2]
    budget_creative_units: 50000
  - name: studio-b
    api_key: key-b
    api_secret_file: {secret_file}
""")
    settings = build_settings({}, {}, config)
    a, b = settings.accounts
    assert (a.name, a.project_ids, a.budget_creative_units) == ("studio-a",
                                                                ("proj_1", "proj_2"), 50000)
    assert b.secret() == "b-secret" and b.budget_creative_units is None


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://example.com", "must be an http(s) URL"),
    ("https://user:pw@proxy.example/v1", "must not hold credentials"),
])
def test_a_bad_api_url_of_an_account_is_named(tmp_path: Path, url: str, message: str) -> None:
    config = tmp_path / "config.yml"
    config.write_text(f"accounts: [{{name: a, api_key: k, api_secret: s, api_url: '{url}'}}]\n")
    with pytest.raises(ConfigError) as caught:
        build_settings({}, {}, config)
    assert str(caught.value).startswith(f"accounts[0] in {config}: api_url: ")
    assert message in str(caught.value) and "pw" not in str(caught.value)


def test_budget_and_projects_flags_apply_to_the_single_account() -> None:
    settings = build_settings({"budget.creative-units": "12000",
                               "scenario.project-ids": "p1, p2"}, CREDS)
    assert settings.accounts[0].budget_creative_units == 12000
    assert settings.accounts[0].project_ids == ("p1", "p2")


def test_team_and_users_come_from_flags_environment_or_the_file(tmp_path: Path) -> None:
    settings = build_settings({"scenario.team-id": "team_1", "scenario.user-ids": "u1,u2"},
                              CREDS)
    assert (settings.accounts[0].team_id, settings.accounts[0].user_ids) == ("team_1",
                                                                           ("u1", "u2"))
    env = {**CREDS, "SCENARIO_EXPORTER_SCENARIO_TEAM_ID": "team_2",
           "SCENARIO_EXPORTER_SCENARIO_USER_IDS": "u3"}
    assert build_settings({}, env).accounts[0].user_ids == ("u3",)
    config = tmp_path / "c.yml"
    config.write_text("accounts:\n  - {name: a, api_key: k, api_secret: s, team_id: t9,\n"
                      "     user_ids: [x, y]}\n")
    (account,) = build_settings({}, {}, config).accounts
    assert (account.team_id, account.user_ids) == ("t9", ("x", "y"))


@pytest.mark.parametrize(("flags", "env", "yaml", "expected"), [
    ({}, {}, None, "https://api.cloud.scenario.com/v1"),
    ({}, {"SCENARIO_BASE_URL": "https://sdk.example/v1/"}, None, "https://sdk.example/v1"),
    ({}, {"SCENARIO_BASE_URL": "https://sdk.example/v1"}, "https://file.example/v1",
     "https://file.example/v1"),
    ({}, {"SCENARIO_BASE_URL": "https://sdk.example/v1",
          "SCENARIO_EXPORTER_SCENARIO_API_URL": "https://env.example/v1"},
     "https://file.example/v1", "https://env.example/v1"),
    ({"scenario.api-url": "https://flag.example/v1"},
     {"SCENARIO_EXPORTER_SCENARIO_API_URL": "https://env.example/v1",
      "SCENARIO_BASE_URL": "https://sdk.example/v1"}, None, "https://flag.example/v1"),
])
def test_the_sdks_base_url_is_below_the_exporters_own_setting(
        tmp_path: Path, flags: dict[str, str], env: dict[str, str], yaml: str | None,
        expected: str) -> None:
    config = None
    if yaml is not None:
        config = tmp_path / "c.yml"
        config.write_text(f"scenario: {{api-url: {yaml!r}}}\n")
    assert build_settings(flags, {**CREDS, **env}, config).api_url == expected


def test_a_bad_sdk_base_url_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="^SCENARIO_BASE_URL: must be an http"):
        build_settings({}, {**CREDS, "SCENARIO_BASE_URL": "ftp://x"})


def test_demo_needs_no_credentials() -> None:
    settings = build_settings({"demo": True}, {})
    assert [a.name for a in settings.accounts] == ["demo"]
    assert settings.accounts[0].budget_creative_units


def test_repr_masks_the_secret() -> None:
    settings = build_settings({}, {"SCENARIO_API_KEY": "key-long-id",
                                   "SCENARIO_API_SECRET": "very-secret-value"})
    for text in (repr(settings), str(settings), repr(settings.accounts[0]),
                 str(settings.accounts[0]), str(settings.model_dump())):
        assert "very-secret-value" not in text


def _error(flags: dict[str, object], env: dict[str, str] | None = None,
           config: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        build_settings(flags, CREDS if env is None else env, config)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("flags", "expected"), [
    ({"cache.ttl": "5x"}, "--cache.ttl: '5x' is not a duration"),
    ({"cache.max-stale": "1s"}, "cache.max-stale must be at least cache.ttl"),
    ({"upstream.timeout": "0s"}, "--upstream.timeout: must be greater than 0"),
    ({"period": "week"}, "--period: must be 'auto', 'billing', 'month' or 'day'"),
    ({"period.anchor-day": "29"}, "--period.anchor-day: must be less than or equal to 28"),
    ({"period.anchor-day": "first"}, "--period.anchor-day: must be a valid integer"),
    ({"log.level": "loud"}, "--log.level: must be 'debug', 'info', 'warning' or 'error'"),
    ({"log.format": "xml"}, "--log.format: must be 'logfmt' or 'json'"),
    ({"web.listen-address": "10097"}, "--web.listen-address: must be host:port"),
    ({"web.telemetry-path": "metrics"}, "--web.telemetry-path: must start with '/'"),
    ({"web.telemetry-path": "/-/ready"}, "--web.telemetry-path: must start with '/'"),
    ({"scenario.api-url": "ftp://x"}, "--scenario.api-url: must be an http(s) URL"),
    ({"upstream.max-requests-per-hour": "0"}, "--upstream.max-requests-per-hour: must be"),
    ({"limits.max-models": "-1"}, "--limits.max-models: must be greater than or equal to 1"),
    ({"limits.max-users": "lots"}, "--limits.max-users: must be a valid integer"),
    ({"budget.creative-units": "-5"}, "--budget.creative-units: must be greater than or equal"),
    ({"budget.creative-units": "much"}, "--budget.creative-units: must be a valid number"),
])
def test_each_bad_flag_is_named(flags: dict[str, object], expected: str) -> None:
    assert _error(flags).startswith(expected)


def test_bad_environment_value_names_the_variable() -> None:
    message = _error({}, {**CREDS, "SCENARIO_EXPORTER_CACHE_TTL": "soon"})
    assert message.startswith("SCENARIO_EXPORTER_CACHE_TTL: 'soon' is not a duration")


def test_bad_file_value_names_the_file_and_setting(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("period:\n  anchor-day: 31\n")
    assert _error({}, config=config).startswith(f"period.anchor-day in {config}: must be")


def test_ca_file_that_is_not_a_certificate_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"^--upstream.ca-file: .*ca.pem holds no PEM CA"):
        build_settings({"upstream.ca-file": str(junk)}, {"SCENARIO_API_KEY": "k",
                                                         "SCENARIO_API_SECRET": "s"})


@pytest.mark.parametrize(("text", "expected"), [
    ("accounts: []", "accounts in {path}: must be a non-empty list"),
    ("accounts:\n  - name: a\n    api_key: k\n", "accounts[0] in {path}: give exactly one of"),
    ("accounts:\n  - name: a\n    api_key: k\n    api_secret: s\n    api_secret_file: /x\n",
     "accounts[0] in {path}: give exactly one of"),
    ("accounts:\n  - name: 'bad name'\n    api_key: k\n    api_secret: s\n",
     "accounts[0] in {path}: name: must be 1-63 letters"),
    ("accounts:\n  - name: a\n    api_key: k\n    api_secret: s\n    colour: red\n",
     "--config.file: {path}: accounts[0].colour: unknown setting"),
    ("accounts:\n  - naem: a\n    api_key: k\n    api_secret: s\n",
     "--config.file: {path}: accounts[0].naem: unknown setting; did you mean accounts[0].name?"),
    ("accounts:\n  - {name: a, api_key: k, api_secret: s}\n  - {name: a, api_key: k2, "
     "api_secret: s}\n", "accounts: the name 'a' is used twice"),
    ("accounts:\n  - name: a\n    api_key: k\n    api_secret_file: /nonexistent/secret\n",
     "accounts[0] in {path}: api_secret_file"),
    ("cache: {ttl: 5m\n", "--config.file: {path}: invalid YAML at line 2"),
    ("- just\n- a list\n", "--config.file: {path}: must be a YAML mapping"),
    ("caching: {ttl: 5m}\n",
     "--config.file: {path}: caching: unknown setting; did you mean cache?"),
    # Typos below the top level, which used to start the exporter with defaults.
    ("cache: {tll: 10m}\n", "--config.file: {path}: cache.tll: unknown setting; "
     "did you mean cache.ttl?"),
    ("log: {levle: debug}\n", "--config.file: {path}: log.levle: unknown setting; "
     "did you mean log.level?"),
    ("web:\n  config:\n    flie: w.yml\n", "--config.file: {path}: web.config.flie: "
     "unknown setting; did you mean web.config.file?"),
    ("cache: {ttl: 5m}\ncache: {ttl: 6m}\n", "--config.file: {path}: invalid YAML at line 2"),
    ("base: &b {ttl: 5m}\ncache: *b\n", "--config.file: {path}: YAML aliases (*name) are not"),
    ("a: " + "[" * 600 + "]" * 600 + "\n", "--config.file: {path}: nested deeper than 32 levels"),
    ("x: " + "{a: " * 600 + "1" + "}" * 600 + "\n",
     "--config.file: {path}: nested deeper than 32 levels"),
    ("# " + "x" * 16 * 1024 * 1024 + "\n", "--config.file: {path}: larger than 16384 KiB"),
])
def test_bad_config_files(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "config.yml"
    config.write_text(text)
    message = _error({}, {}, config)
    assert expected.format(path=config) in message, message


@pytest.mark.parametrize("flag", ["cache.ttl", "web.listen-address", "upstream.timeout"])
def test_an_invalid_value_is_never_echoed_whole(flag: str) -> None:
    # A secret pasted into the wrong flag must not reach the logs.
    secret = "sk_live_0123456789abcdef"
    message = _error({flag: secret})
    assert message.startswith(f"--{flag}: ")
    assert secret[:4] not in message, message


def test_missing_credentials_say_how_to_give_them() -> None:
    message = _error({}, {})
    assert "SCENARIO_API_KEY" in message and "--demo" in message
    assert "SCENARIO_API_KEY" in _error({}, {"SCENARIO_API_SECRET": "s"})
    assert "SCENARIO_API_SECRET" in _error({}, {"SCENARIO_API_KEY": "k"})
    assert "cannot read" in _error({}, {"SCENARIO_API_KEY": "k",
                                        "SCENARIO_API_SECRET_FILE": "/nonexistent"})


def test_settings_model_is_frozen() -> None:
    from pydantic import ValidationError

    settings = Settings()
    with pytest.raises(ValidationError):
        settings.cache_ttl = 1  # type: ignore[misc]
