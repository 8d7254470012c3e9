"""Fixtures for the serve API tests (helpers in serve_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from serve_support import DEV, RecordingEngine, fleet_file

from redfleet.store import FleetStore, KeyRing


@pytest.fixture
def store(tmp_path) -> Iterator[FleetStore]:
    s = FleetStore(f"sqlite:///{tmp_path}/fleet.db", keyring=KeyRing.from_key(Fernet.generate_key().decode()),
                   actor="pytest")
    s.import_fleet(fleet_file())
    yield s
    s.close()


@pytest.fixture
def engine() -> RecordingEngine:
    return RecordingEngine()


@pytest.fixture
def client(store: FleetStore, engine: RecordingEngine) -> Iterator[TestClient]:
    from redfleet.api.app import create_app

    app = create_app(store, engine=engine, dev_token=DEV, evaluate_interval=0.05, persist_interval=0.05)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {DEV}"
        yield c
