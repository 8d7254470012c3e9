"""Shared test fixtures."""

from __future__ import annotations

import pytest

from redfleet.paths import mockups_dir, shared_dir


@pytest.fixture(scope="session")
def shared():
    path = shared_dir()
    if not path.is_dir():
        pytest.skip(f"reference data folder {path} is absent (set REDFLEET_SHARED or check out ../shared)")
    return path


@pytest.fixture(scope="session")
def mockups(shared):
    path = mockups_dir()
    if not path.is_dir():
        pytest.skip(f"Redfish mockups not found at {path}")
    return path
