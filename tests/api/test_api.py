"""REST API of redfleet serve: contract fields, auth and roles, ingest, health history and events persisted,
audit of changes, /metrics exposition."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from serve_support import DEV, RecordingEngine, wait_for

from redfleet.store import FleetStore


def batch(node: str, *, xid: int | None = None, os_state: str = "up", n: int = 4) -> dict:
    now = time.time()
    return {
        "node": node, "sent_at": now, "source": "sim", "os_state": os_state,
        "samples": [{"metric": "DCGM_FI_DEV_GPU_TEMP", "value": 40.0 + g, "ts": now, "gpu": g} for g in range(n)],
        "events": [] if xid is None else [{"ts": now, "kind": "xid", "gpu": 0, "code": xid,
                                           "message": f"NVRM: Xid (PCI:0000:3a:00): {xid}"}],
    }


def test_nodes_contract_fields(client: TestClient) -> None:
    r = client.get("/api/v1/nodes")
    assert r.status_code == 200, r.text
    nodes = r.json()
    assert [n["name"] for n in nodes] == ["node-00001", "node-00002", "node-00003"]
    for n in nodes:
        assert n["bmc_url"].startswith("https://127.19.0.")
        assert n["health"]["state"] == "unknown" and n["health"]["reasons"] == []
    one = client.get("/api/v1/nodes/node-00002").json()
    assert one["name"] == "node-00002" and {"inventory", "metrics", "components", "health"} <= set(one)
    assert client.get("/api/v1/nodes/nope").status_code == 404


def test_auth_required_and_roles(client: TestClient, store: FleetStore) -> None:
    anon = TestClient(client.app)
    assert anon.get("/api/v1/nodes").status_code == 401
    assert anon.get("/api/v1/nodes", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.post("/api/v1/tokens", json={"name": "alice", "role": "viewer"})
    assert r.status_code == 201, r.text
    viewer = r.json()["token"]
    assert viewer.startswith("rft_")
    h = {"Authorization": f"Bearer {viewer}"}
    assert anon.get("/api/v1/nodes", headers=h).status_code == 200
    assert anon.get("/api/v1/tokens", headers=h).status_code == 403  # admin only
    assert anon.post("/api/v1/nodes/node-00001/state", json={"state": "maintenance"}, headers=h).status_code == 403
    # tokens are stored hashed, never in clear
    from redfleet.store.tokens import ApiToken

    with store.session() as s:
        digests = [t.digest for t in s.query(ApiToken).all()]
    assert viewer not in digests and len(digests) == 1
    # revoking takes effect at once
    assert client.delete("/api/v1/tokens/alice").status_code == 204
    assert anon.get("/api/v1/nodes", headers=h).status_code == 401
    actions = [a["action"] for a in client.get("/api/v1/audit").json()]
    assert "api.token.create" in actions and "api.token.revoke" in actions


def test_operator_change_is_audited(client: TestClient) -> None:
    tok = client.post("/api/v1/tokens", json={"name": "ops", "role": "operator"}).json()["token"]
    r = client.post("/api/v1/nodes/node-00003/state", json={"state": "maintenance", "reason": "ticket 7"},
                    headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200, r.text
    assert r.json()["lifecycle"] == "maintenance"
    audit = client.get("/api/v1/audit", params={"target": "node-00003"}).json()
    assert audit and audit[0]["actor"] == "api:ops" and audit[0]["reason"] == "ticket 7"


def test_ingest_needs_the_nodes_agent_token(client: TestClient, engine: RecordingEngine) -> None:
    toks = client.post("/api/v1/agents/tokens", json={"nodes": ["node-00001", "node-00002"]}).json()
    assert set(toks) == {"node-00001", "node-00002"}
    anon = TestClient(client.app)
    ok = anon.post("/api/v1/ingest", json=batch("node-00001"),
                   headers={"Authorization": f"Bearer {toks['node-00001']}"})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"accepted_samples": 4, "accepted_events": 0, "node": "node-00001"}
    # another node's token cannot speak for node-00001
    wrong = anon.post("/api/v1/ingest", json=batch("node-00001"),
                      headers={"Authorization": f"Bearer {toks['node-00002']}"})
    assert wrong.status_code == 403 and "node-00002" in wrong.json()["detail"]
    # a viewer token cannot ingest; an unknown node is refused; a malformed batch is a 422
    v = client.post("/api/v1/tokens", json={"name": "v", "role": "viewer"}).json()["token"]
    assert anon.post("/api/v1/ingest", json=batch("node-00001"), headers={"Authorization": f"Bearer {v}"}
                     ).status_code == 403
    assert client.post("/api/v1/ingest", json=batch("ghost")).status_code == 404
    bad = batch("node-00001")
    bad["samples"][0]["value"] = "hot"
    assert client.post("/api/v1/ingest", json=bad).status_code == 422
    assert ("agent", ("node-00001", "up")) in engine.calls
    assert ("samples", ("node-00001", 4)) in engine.calls


def test_health_change_shown_persisted_and_exposed(client: TestClient, store: FleetStore) -> None:
    assert client.post("/api/v1/ingest", json=batch("node-00002")).status_code == 200
    wait_for(lambda: client.get("/api/v1/nodes/node-00002").json()["health"]["state"] == "healthy")
    assert client.post("/api/v1/ingest", json=batch("node-00002", xid=79)).status_code == 200
    node = wait_for(lambda: (n := client.get("/api/v1/nodes/node-00002").json())["health"]["state"] == "unhealthy"
                    and n)
    assert node["health"]["reasons"] == [{"rule": "xid-79"}]
    hist = wait_for(lambda: (h := client.get("/api/v1/nodes/node-00002/health/history").json()) and len(h) >= 2
                    and h)
    assert [(h["old"], h["new"]) for h in hist[:2]] == [("healthy", "unhealthy"), ("unknown", "healthy")]
    assert hist[0]["reasons"][0]["rule"] == "xid-79"
    assert store.node("node-00002").health == "unhealthy"  # the store's column follows
    evs = wait_for(lambda: client.get("/api/v1/events", params={"node": "node-00002"}).json())
    assert evs[0]["source"] == "agent" and evs[0]["message_id"] == "Xid 79"
    only_bad = client.get("/api/v1/nodes", params={"state": "unhealthy"}).json()
    assert [n["name"] for n in only_bad] == ["node-00002"]
    # /metrics: unauthenticated, Prometheus names with base units
    m = TestClient(client.app).get("/metrics")
    assert m.status_code == 200
    text = m.text
    assert 'redfleet_gpu_temperature_celsius{gpu="3",node="node-00002"} 43.0' in text
    assert 'redfleet_node_health{node="node-00002",state="unhealthy"} 1.0' in text
    assert 'redfleet_nodes{state="unhealthy"} 1.0' in text
    assert "redfleet_ingest_samples_total 8.0" in text


def test_rules_and_openapi(client: TestClient) -> None:
    assert client.get("/api/v1/rules").json() == [{"name": "xid-79", "severity": "critical"}]
    spec = client.get("/openapi.json").json()
    for path in ("/api/v1/nodes", "/api/v1/nodes/{name}", "/api/v1/events", "/api/v1/nodes/{name}/health/history",
                 "/api/v1/rules", "/api/v1/ingest"):
        assert path in spec["paths"], path
    assert client.get("/docs").status_code == 200


def test_metrics_can_require_auth(store: FleetStore, engine: RecordingEngine) -> None:
    from redfleet.api.app import create_app

    with TestClient(create_app(store, engine=engine, dev_token=DEV, metrics_auth=True)) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": f"Bearer {DEV}"}).status_code == 200


def test_ingest_rejects_garbage_bodies(client: TestClient) -> None:
    for body in (b"\xff\xfex", b"null", b"[]", b'{"node": ""}', b"{" * 5000):
        r = client.post("/api/v1/ingest", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (body[:20], r.status_code, r.text[:200])
