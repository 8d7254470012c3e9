"""The SSD API router, driven with FastAPI's TestClient over an in-memory store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient  # needs httpx2 (dev extra)
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from redfleet.api.ssd import make_router, router
from redfleet.predict import DriveModel
from redfleet.store.base import Base

FIX = Path(__file__).parent / "fixtures"


def _engine():
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    return engine


@pytest.fixture
def client():
    app = FastAPI()
    app.state.db_engine = _engine()
    app.include_router(router)
    return TestClient(app)


def post_history(client, drive_id, model, days, node_id="n1"):
    now = datetime.now(UTC)
    for d in days:
        s = model.state_at(d)
        body = {"collected_at": (now - timedelta(days=max(days) - d)).isoformat(), "node_id": node_id,
                "smart": s.nvme_cli_smart_json(), "ocp": s.nvme_cli_ocp_json(4, "snake")}
        r = client.post(f"/ssd/drives/{drive_id}/samples", json=body)
        assert r.status_code == 201, r.text
    return r.json()


def test_post_samples_then_drive_fleet_budget(client):
    bad = DriveModel(1, "badblocks")
    assert bad.failure_day is not None
    doc = post_history(client, "n1-nvme0", bad, [bad.failure_day - 20 + i for i in range(14)])
    assert doc["recommendation"] in ("WATCH", "REPLACE") and doc["reasons"]
    post_history(client, "n2-nvme0", DriveModel(2, "healthy"), range(0, 10), node_id="n2")

    r = client.get("/ssd/drives/n1-nvme0")
    assert r.status_code == 200
    one = r.json()
    assert one["node_id"] == "n1" and one["samples"] == 14 and one["latest"]["ocp"]["log_page_version"] == 4
    assert "levels" in one and one["risk"] > 0.3

    fleet = client.get("/ssd/drives").json()
    assert fleet["count"] == 2 and fleet["drives"][0]["drive_id"] == "n1-nvme0" and fleet["drives"][0]["rank"] == 1
    assert sum(fleet["counts"].values()) == 2
    assert client.get("/ssd/drives", params={"recommendation": "MONITOR"}).json()["count"] == 1
    assert client.get("/ssd/drives", params={"node_id": "n2"}).json()["drives"][0]["drive_id"] == "n2-nvme0"

    budget = client.get("/ssd/budget", params={"k": 1}).json()
    assert [d["drive_id"] for d in budget["replace"]] == ["n1-nvme0"]

    hist = client.get("/ssd/drives/n1-nvme0/history").json()
    assert hist["count"] == 14 and hist["samples"][0]["source"] == "api"


def test_raw_upload_and_errors(client):
    s = DriveModel(4, "media").state_at(10)
    r = client.post("/ssd/drives/x/raw", content=s.ocp_c0_bytes(5), params={"node_id": "n9"},
                    headers={"content-type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    r = client.post("/ssd/drives/x/raw", content=s.smart_log_bytes(),
                    params={"collected_at": "2025-01-01T00:00:00Z"})
    assert r.status_code == 201
    r = client.post("/ssd/drives/x/raw", content=b"\x00" * 100)
    assert r.status_code == 422 and "wrong length" in r.json()["detail"]
    bad = bytearray(s.ocp_c0_bytes(5))
    bad[494] = 42
    r = client.post("/ssd/drives/x/raw", content=bytes(bad))
    assert r.status_code == 422 and "unknown log page version 42" in r.json()["detail"]
    r = client.post("/ssd/drives/x/samples", json={"ocp": {"log_page_version": 4, "log_page_guid": "0x1"}})
    assert r.status_code == 422 and "GUID" in r.json()["detail"]
    assert client.get("/ssd/drives/nope").status_code == 404
    assert client.get("/ssd/drives/nope/history").status_code == 404
    assert client.get("/ssd/drives/x/history", params={"since": "yesterday"}).status_code == 422


def test_stateless_score():
    app = FastAPI()
    app.include_router(make_router())  # no store at all: /score still works
    c = TestClient(app)
    doc = json.loads((FIX / "smartctl-7.4-nvme-failing.json").read_text())
    r = c.post("/ssd/score", json=doc)
    assert r.status_code == 200
    drive = r.json()["drives"][0]
    assert drive["recommendation"] == "REPLACE" and any("read-only" in t for t in drive["reasons"])
    assert c.post("/ssd/score", json={"hello": 1}).status_code == 422
    assert c.get("/ssd/drives").status_code == 503


def test_session_factory_and_thresholds_from_state():
    from redfleet.predict.scoring import Thresholds

    app = FastAPI()
    app.state.ssd_session_factory = sessionmaker(_engine())
    app.state.ssd_thresholds = Thresholds(watch_at=0.99, replace_at=0.999)
    app.include_router(router)
    c = TestClient(app)
    body = {"smart": {"critical_warning": 0, "avail_spare": 15, "spare_thresh": 10, "percent_used": 1}}
    r = c.post("/ssd/drives/d/samples", json=body)
    assert r.status_code == 201 and r.json()["recommendation"] == "MONITOR"
