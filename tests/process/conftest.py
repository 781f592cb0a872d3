"""Fixtures of the process tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.upstream.demo import DemoAccount
from testkit.fake_upstream import FakeUpstream
from testkit.served import API_KEY, API_SECRET


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    """The loopback fake of the API with the demo account, for :func:`testkit.served.start`
    (a module that needs another account or other credentials defines its own)."""
    with FakeUpstream(DemoAccount(), API_KEY, API_SECRET) as upstream:
        yield upstream
