"""The real command line, run as users run it (``python -m exporter``): a bad flag,
value, variable or date is one line on stderr and exit 2, with nothing served and
nothing written; ``--help``, ``--version`` and ``check --demo`` work.

What each bad value's message says is tested in process, in ``tests/unit/test_config.py``
(the exporter's settings) and ``tests/unit/test_backfill_plan.py`` (the backfill's dates).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from exporter.core.period import period_start
from testkit.processes import EXPORTER, Processes, clean_environment, free_port
from testkit.repo import REPO_ROOT
from testkit.served import API_KEY, API_SECRET

CREDS = {"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": API_SECRET}


def run_cli(*args: str, env: Mapping[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """``scenario-exporter ARGS`` to its end, in a clean environment plus *env*."""
    return subprocess.run([*EXPORTER, *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO_ROOT, env=clean_environment(env))


# -- the exporter: exit 2, one line, no traceback, nothing served -----------------------


CONFIG_ERRORS = [
    pytest.param(["--cache.ttl", "soon"], None, "--cache.ttl", id="bad-duration"),
    pytest.param(["--period", "week"], None, "--period", id="bad-period"),
    pytest.param(["--period.anchor-day", "31"], None, "--period.anchor-day", id="anchor-day"),
    pytest.param([], {"SCENARIO_EXPORTER_LOG_LEVEL": "loud"}, "SCENARIO_EXPORTER_LOG_LEVEL",
                 id="bad-env"),
    pytest.param(["--no-such-flag"], None, "--no-such-flag", id="unknown-flag"),
    pytest.param([], {"SCENARIO_API_KEY": "", "SCENARIO_API_SECRET": ""}, "--demo",
                 id="no-credentials"),
]


@pytest.mark.parametrize("args, env, named", CONFIG_ERRORS)
def test_config_error_exits_2_with_one_line(processes: Processes, args: list[str],
                                            env: dict[str, str] | None, named: str) -> None:
    port = free_port()
    proc = processes.start(
        "--web.listen-address", f"127.0.0.1:{port}", *args,
        env={"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": API_SECRET, **(env or {})})
    assert proc.wait(20) == 2
    lines = proc.stderr_lines
    assert len(lines) == 1, lines
    assert named in lines[0]
    assert lines[0].startswith("scenario-exporter: ")
    assert proc.stdout_lines == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["--cache.ttl", "5x"], CREDS, "--cache.ttl"),
    (["--period.anchor-day", "0"], CREDS, "--period.anchor-day"),
    (["--no-such-flag"], CREDS, "--no-such-flag"),
    ([], {}, "--demo"),
    (["--config.file", "/nonexistent.yml"], CREDS, "--config.file"),
    (["--web.listen-address", "127.0.0.1:99999"], CREDS, "--web.listen-address"),
])
def test_cli_exits_2_with_one_line(args: list[str], env: dict[str, str], needle: str) -> None:
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_help_and_version() -> None:
    help_text = run_cli("--help").stdout
    for flag in ("--web.listen-address", "--cache.ttl", "--demo", "--budget.creative-units",
                 "SCENARIO_API_KEY", "SCENARIO_API_SECRET_FILE", "check"):
        assert flag in help_text
    from exporter import __version__
    assert __version__ in run_cli("--version").stdout


# -- check ---------------------------------------------------------------------------------


def test_the_real_command_with_the_demo() -> None:
    result = run_cli("check", "--demo")
    assert result.returncode == 0, result.stderr
    assert "account demo" in result.stdout and "top 5 models" in result.stdout


# -- backfill: exit 2, one line, nothing written -----------------------------------------


def _current_period_start() -> date:
    return period_start(datetime.now(timezone.utc)).date()


def _months_before(day: date, months: int) -> date:
    month = day.month - months
    return day.replace(year=day.year + (month - 1) // 12, month=(month - 1) % 12 + 1)


BAD_INPUT = {
    "start after end": (["--start=2026-10-01", "--end=2026-09-01"], "--start: "),
    "into the current period": (["--start={last}", "--end={tomorrow}"], "--end: "),
    "periods and start": (["--start={old}", "--periods=3"], "--periods: "),
    "no destination": (["--start={last}", "--end={current}", "--no-output"], "--output: "),
    "not a date": (["--start=August", "--end={current}"], "--start: "),
    "bad label": (["--start={last}", "--end={current}", "--label=job"], "--label: "),
    "label of the series": (["--start={last}", "--end={current}", "--label=account=x"],
                            "--label: "),
    "unwritable output": (["--start={last}", "--end={current}", "--output={tmp}/no/such/x.om"],
                          "--output: "),
    "output is a directory": (["--start={last}", "--end={current}", "--output={tmp}"],
                              "--output: "),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path: Path, case: str) -> None:
    current = _current_period_start()
    values = {"current": current, "last": _months_before(current, 1),
              "old": _months_before(current, 6),
              "tomorrow": datetime.now(timezone.utc).date() + timedelta(days=1),
              "tmp": tmp_path}
    args, prefix = BAD_INPUT[case]
    argv = [arg.format(**values) for arg in args]
    if "--no-output" in argv:
        argv.remove("--no-output")
    elif not any(arg.startswith("--output") for arg in argv):
        argv.append(f"--output={tmp_path / 'out.om'}")
    # Calendar months, which the dates above are computed in (billing: test_backfill_billing).
    result = run_cli("backfill", "--demo", "--period=month", *argv)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scenario-exporter: " + prefix), lines
    assert list(tmp_path.iterdir()) == []
