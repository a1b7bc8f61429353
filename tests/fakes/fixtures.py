"""Pytest fixtures for the fakes: import the ones you use into a test module or conftest."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.fake_graph import FakeGraph

FAKE_TOKEN = "fake-token-0123456789"


@pytest.fixture
async def fake_graph() -> AsyncIterator[FakeGraph]:
    """A fake Graph API on 127.0.0.1 (random port) on the test's event loop; token ``FAKE_TOKEN``."""
    async with FakeGraph(token=FAKE_TOKEN, seed=7) as fake:
        yield fake
