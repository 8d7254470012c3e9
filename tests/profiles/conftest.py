"""Fixtures for the profile engine tests: profile and mockup folders from ../shared."""

from __future__ import annotations

import pytest

from redfleet.paths import shared_dir


@pytest.fixture(scope="session")
def ocp_profiles():
    path = shared_dir() / "redfish" / "profiles"
    if not path.is_dir():
        pytest.skip(f"OCP profiles not found at {path}")
    return path
