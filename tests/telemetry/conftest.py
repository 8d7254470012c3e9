"""Fixtures for collector tests: a certificate cache shared by the module's simulated fleets."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def cert_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tmp_path_factory.mktemp("sim-certs")
