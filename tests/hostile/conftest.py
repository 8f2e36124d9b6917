"""The hostile suite's world: one per module, on the session's harness."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers import Harness
from tests.hostile.world import World


@pytest.fixture(scope="module")
async def world(harness: Harness) -> AsyncIterator[World]:
    w = await World(harness).setup()
    yield w
    await w.close()
