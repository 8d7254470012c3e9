"""Fixtures for the agent tests (the receiver lives in agent_receiver.py so tests can import it by a unique
name)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from agent_receiver import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()
