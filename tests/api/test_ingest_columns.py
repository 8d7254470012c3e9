"""Columnar ingest through serve: both columnar encodings and the JSON one give the same stored series, health and
answer; the same refusals (token, node, malformed) from the plain-ASGI path and from the FastAPI route (the
dashboard's cookie); remediation commands ride back in the columnar answer too."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from serve_support import DEV, wait_for

from redfleet.store import FleetStore
from redfleet.telemetry.columns import BINARY_TYPE, CONTENT_TYPE, columnar_body, encode


@pytest.fixture
def real(store: FleetStore) -> Iterator[TestClient]:
    """serve with the real health engine and series store."""
    from redfleet.api.app import create_app

    app = create_app(store, dev_token=DEV, evaluate_interval=0.05, persist_interval=0.05)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {DEV}"
        yield c


def _batch(node: str, now: float, temp: float = 40.0, dbe: float = 0.0, xid: int | None = None) -> dict:
    return {
        "node": node, "sent_at": now, "source": "sim",
        "gpus": [{"gpu": g, "model": "NVIDIA H100 80GB HBM3"} for g in range(2)], "gpus_expected": 2,
        "samples": [{"metric": m, "value": v + g * (m == "DCGM_FI_DEV_GPU_TEMP"), "ts": now, "gpu": g} for g in range(2)
                    for m, v in (("DCGM_FI_DEV_GPU_TEMP", temp), ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", dbe))],
        "events": [] if xid is None else [{"ts": now, "kind": "xid", "gpu": 0, "code": xid,
                                           "message": f"NVRM: Xid (PCI:0000:3a:00): {xid}"}],
    }


def _post(c: TestClient, body: bytes, ctype: str, **headers: str) -> object:
    return c.post("/api/v1/ingest", content=body, headers={"Content-Type": ctype, **headers})


@pytest.mark.parametrize("ctype", [BINARY_TYPE, CONTENT_TYPE, "application/json"])
def test_each_encoding_stores_and_judges_the_same(real: TestClient, ctype: str) -> None:
    now = time.time()
    body = orjson.dumps(_batch("node-00001", now)) if ctype == "application/json" else \
        columnar_body(_batch("node-00001", now), binary=ctype == BINARY_TYPE)
    r = _post(real, body, ctype)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted_samples": 4, "accepted_events": 0, "node": "node-00001"}
    node = wait_for(lambda: (n := real.get("/api/v1/nodes/node-00001").json())["health"]["state"] == "healthy"
                    and n)
    got = {(m["metric"], m["gpu"]): (m["ts"], m["value"]) for m in node["metrics"]}
    assert got[("DCGM_FI_DEV_GPU_TEMP", 1)] == (now, 41.0) and len(got) == 4
    pts = real.get("/api/v1/nodes/node-00001/metrics", params={"metric": "DCGM_FI_DEV_GPU_TEMP", "gpu": 0}).json()
    assert pts["series"][0]["points"][-1] == [now, 40.0]
    # an uncorrectable ECC error and an Xid in the next batch, same encoding
    later = _batch("node-00001", now + 1, temp=120.0, dbe=1.0, xid=79)
    body = orjson.dumps(later) if ctype == "application/json" else columnar_body(later, binary=ctype == BINARY_TYPE)
    assert _post(real, body, ctype).status_code == 200
    node = wait_for(lambda: (n := real.get("/api/v1/nodes/node-00001").json())["health"]["state"] == "unhealthy"
                    and n)
    rules = {x["rule"] for x in node["health"]["reasons"]}
    assert "gpu-ecc-dbe" in rules and any(r.startswith("xid") for r in rules), rules
    status = real.get("/api/v1/status").json()
    assert status["samples_total"] == 8 and status["batches_total"] == 2
    assert 'redfleet_gpu_temperature_celsius{gpu="1",node="node-00001"} 121.0' in TestClient(real.app).get(
        "/metrics").text


def test_several_rows_per_batch_keep_one_hertz(real: TestClient) -> None:
    now = time.time() - 5
    body = encode({"node": "node-00002", "sent_at": now + 4}, ["DCGM_FI_DEV_POWER_USAGE"], [0],
                  [now + i for i in range(5)], [[100.0 + i] for i in range(5)])
    r = _post(real, body, BINARY_TYPE)
    assert r.status_code == 200 and r.json()["accepted_samples"] == 5
    pts = real.get("/api/v1/nodes/node-00002/metrics", params={"metric": "DCGM_FI_DEV_POWER_USAGE"}).json()
    assert pts["series"][0]["points"] == [[now + i, 100.0 + i] for i in range(5)]


def test_refusals_are_the_same_on_both_paths(real: TestClient) -> None:
    toks = real.post("/api/v1/agents/tokens", json={"nodes": ["node-00001", "node-00002"]}).json()
    anon = TestClient(real.app)
    good = columnar_body(_batch("node-00001", time.time()))
    assert _post(anon, good, BINARY_TYPE, Authorization=f"Bearer {toks['node-00001']}").status_code == 200
    wrong = _post(anon, good, BINARY_TYPE, Authorization=f"Bearer {toks['node-00002']}")
    assert wrong.status_code == 403 and "node-00002" in wrong.json()["detail"]
    bad_tok = _post(anon, good, BINARY_TYPE, Authorization="Bearer nope")
    assert bad_tok.status_code == 401 and bad_tok.headers["www-authenticate"] == "Bearer"
    assert _post(real, columnar_body(_batch("ghost", time.time())), BINARY_TYPE).status_code == 404
    for body, ctype in ((good[:-8], BINARY_TYPE), (b"\x01", BINARY_TYPE), (b"[]", CONTENT_TYPE),
                        (b'{"node": "node-00001", "sent_at": 1, "columns": {"metrics": ["a"], "gpus": [0]}, '
                         b'"ts": [1], "values": [[1, 2]]}', CONTENT_TYPE),
                        (orjson.dumps({**_batch("node-00001", 1.0), "bogus": 1}), CONTENT_TYPE)):
        r = _post(real, body, ctype)
        assert r.status_code == 422 and isinstance(r.json()["detail"], list), (body[:30], r.text)
    # no Authorization header: the FastAPI route answers, with the same checks (here: no credentials at all)
    assert _post(anon, good, BINARY_TYPE).status_code == 401
    # the dashboard's cookie (an admin's token) with its CSRF header goes through the FastAPI route
    anon.cookies.set("redfleet_token", DEV)
    r = _post(anon, good, BINARY_TYPE, **{"x-redfleet-csrf": "1"})
    assert r.status_code == 200, r.text
    r = _post(anon, b"\x01", BINARY_TYPE, **{"x-redfleet-csrf": "1"})
    assert r.status_code == 422


def test_commands_ride_back_in_the_columnar_answer(real: TestClient) -> None:
    queue = real.app.state.commands
    if queue is None:
        pytest.skip("remediation commands are not part of this build")
    cmd = queue.submit("node-00001", "gpu-reset", gpu=0, reason="test")
    r = _post(real, columnar_body(_batch("node-00001", time.time())), BINARY_TYPE)
    assert r.status_code == 200
    assert [(c["id"], c["kind"], c["gpu"]) for c in r.json()["commands"]] == [(cmd.id, "gpu-reset", 0)]
    done = {**_batch("node-00001", time.time()),
            "command_results": [{"id": cmd.id, "ok": True, "message": "reset", "finished_at": time.time()}]}
    r = _post(real, columnar_body(done), BINARY_TYPE)
    assert r.status_code == 200 and "commands" not in r.json()  # acknowledged: not delivered again
