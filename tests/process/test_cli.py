"""The real command line, run as users run it (``python -m exporter``): a bad flag,
value, variable or date is one line on stderr and exit 2, with nothing served and
nothing written; ``--help``, ``--version`` and ``check --demo`` work.

What each value's message says is tested in process in ``tests/unit/test_config.py``
(the exporter's settings) and ``tests/component/test_backfill.py`` (the backfill's).
"""

from __future__ import annotations

import socket

import pytest

from testkit.processes import Processes, free_port
from testkit.served import API_KEY, API_SECRET

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
