"""`scenario-exporter check`: a summary per account, or the exact reason of failure."""

from __future__ import annotations

import io

import httpx

from exporter.check.command import run_check
from exporter.config.load import build_settings
from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_api import demo_transport

ENV = {"SCENARIO_API_KEY": "key-check", "SCENARIO_API_SECRET": "secret-check"}


def test_summary_of_a_good_account() -> None:
    settings = build_settings({"budget.creative-units": "100000"}, ENV)
    account = DemoAccount(models=8, users=3)
    out = io.StringIO()
    assert run_check(settings, demo_transport(account, "key-check", "secret-check"), out) is True
    text = out.getvalue()
    assert text.startswith("account default (key key-…), from ")
    assert "\n  period: billing period from Scenario, " in text  # --period=auto
    # The key reads its team too: which endpoints, and the bill they tell.
    assert "GET /teams/team_demo/limits: readable" in text
    assert "billing period: " in text and "prepaid units left: 22,000 CU" in text
    assert "OK: 1 request(s)" in text and "period-to-date spend:" in text
    assert "top 5 models by spend:" in text and "assets created: 3d " in text
    assert "budget: 100,000 CU" in text
    assert text.count(" CU  ") == 5 + 5  # five model lines, five actions
    assert "top 5 actions by CU (negative: credited):" in text
    assert "CU  refunds" in text and "quality gate: fail " in text
    assert "secret-check" not in text


def test_failure_gives_the_reason_and_exit_1() -> None:
    settings = build_settings({}, ENV)
    out = io.StringIO()
    transport = httpx.MockTransport(lambda r: httpx.Response(401, json={}))
    assert run_check(settings, transport, out) is False
    assert "FAILED (auth): upstream refused the credentials (HTTP 401)" in out.getvalue()
