"""The dashboard's server side without a browser: login and cookie rules, the CSRF check on cookie-only writes,
the compact overview endpoint and the profile-conformance read API (FastAPI's TestClient, no network)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from redfleet.api.app import create_app
from redfleet.model.fleetfile import Credential, FleetFile, FleetNode
from redfleet.model.ingest import InbandEvent, IngestBatch
from redfleet.store import FleetStore, KeyRing
from redfleet.store.profiles import save_profile_results
from redfleet.store.tokens import create_token

ADMIN, VIEWER, OPERATOR, AGENT = "adm-token", "view-token", "oper-token", "agent-token"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FleetStore]:
    st = FleetStore(f"sqlite:///{tmp_path}/f.db", keyring=KeyRing.from_key(Fernet.generate_key().decode()),
                    actor="t")
    st.import_fleet(FleetFile(credentials={"c": Credential(username="u", password="p")}, nodes=[
        FleetNode(name=f"n{i}", bmc_url=f"https://127.3.200.{i + 1}", credential="c", rack=f"r{i // 3}",
                  position=i % 3 + 1, tags=[f"persona:{'train' if i % 2 else 'infer'}", "zone-a"])
        for i in range(6)]))
    st.transaction(lambda s: (create_token(s, "v", "viewer", token=VIEWER),
                              create_token(s, "o", "operator", token=OPERATOR),
                              create_token(s, "a", "agent", node="n0", token=AGENT)))
    yield st
    st.close()


@pytest.fixture
def client(store: FleetStore) -> Iterator[TestClient]:
    with TestClient(create_app(store, dev_token=ADMIN), base_url="http://127.0.0.1:8080") as c:
        yield c


def login(c: TestClient, token: str) -> None:
    r = c.get(f"/?token={token}", follow_redirects=False)
    assert r.status_code == 303, r.text


def test_pages_need_a_login_and_token_in_url_logs_in(client: TestClient) -> None:
    r = client.get("/nodes/n1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fnodes%2Fn1"
    r = client.get("/nodes/n1?token=" + VIEWER + "&x=1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/nodes/n1?x=1"  # the token leaves the URL
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert client.get("/nodes/n1").status_code == 200
    assert client.get("/nodes/nope").status_code == 404
    # a bad token in the URL: the login page with the reason, no cookie
    client.cookies.clear()
    r = client.get("/?token=wrong", follow_redirects=False)
    assert r.status_code == 401 and "unknown or revoked" in r.text and "set-cookie" not in r.headers


def test_login_form_refuses_agent_tokens_and_foreign_redirects(client: TestClient) -> None:
    r = client.post("/login", data={"token": AGENT, "next": "/"}, follow_redirects=False)
    assert r.status_code == 401 and "agent token cannot use the dashboard" in r.text
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil"):
        r = client.post("/login", data={"token": VIEWER, "next": evil}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/", evil
    r = client.post("/login", data={"token": VIEWER, "next": "/ssd"}, headers={"Origin": "http://evil.example"},
                    follow_redirects=False)
    assert r.status_code == 403
    r = client.get("/logout", follow_redirects=False)
    assert r.status_code == 303 and 'redfleet_token=""' in r.headers["set-cookie"]


def test_cookie_writes_need_the_csrf_header_and_same_origin(client: TestClient, store: FleetStore) -> None:
    login(client, OPERATOR)
    body = {"state": "maintenance"}
    r = client.post("/api/v1/nodes/n1/state", json=body)
    assert r.status_code == 403 and "x-redfleet-csrf" in r.json()["detail"]
    r = client.post("/api/v1/nodes/n1/state", json=body,
                    headers={"X-Redfleet-CSRF": "1", "Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    assert store.node("n1").state == "active"
    r = client.post("/api/v1/nodes/n1/state", json=body,
                    headers={"X-Redfleet-CSRF": "1", "Origin": "http://127.0.0.1:8080"})
    assert r.status_code == 200 and store.node("n1").state == "maintenance"
    # reads need no header; a Bearer header still wins over the cookie
    assert client.get("/api/v1/nodes").status_code == 200
    r = client.post("/api/v1/nodes/n1/state", json={"state": "active"}, headers={"Authorization": f"Bearer {VIEWER}"})
    assert r.status_code == 403  # the viewer's bearer token, not the operator's cookie


def test_viewer_cookie_cannot_write(client: TestClient) -> None:
    login(client, VIEWER)
    r = client.post("/api/v1/nodes/n1/state", json={"state": "maintenance"}, headers={"X-Redfleet-CSRF": "1"})
    assert r.status_code == 403 and "operator" in r.json()["detail"]
    assert 'id="actions"' not in client.get("/nodes/n1").text
    login(client, OPERATOR)
    assert 'id="actions"' in client.get("/nodes/n1").text


def test_overview_columns_counts_and_cache(client: TestClient) -> None:
    import time

    app: Any = client.app
    hub = app.state.hub
    now = time.time()
    hub.ingest(IngestBatch(node="n2", sent_at=now, source="sim",
                           events=[InbandEvent(ts=now, gpu=0, code=79, message="fallen off the bus")]), now=now)
    for n in ("n0", "n1", "n3"):
        hub.ingest(IngestBatch(node=n, sent_at=now, source="sim"), now=now)
    h = {"Authorization": f"Bearer {VIEWER}"}
    deadline = time.monotonic() + 10
    while True:
        app.state.overview_cache = None  # rebuild: the test waits for the evaluator, not the 1 s cache
        d = client.get("/api/v1/overview", headers=h).json()
        if d["state"][d["names"].index("n2")] == "unhealthy" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert d["count"] == 6 and d["names"] == [f"n{i}" for i in range(6)]
    i = d["names"].index("n2")
    assert d["state"][i] == "unhealthy" and d["action"][i] == "RESTART_BM"
    assert d["rack"][i] == "r0" and d["position"][i] == 3 and "persona:infer" in d["tags"][i]
    assert sum(d["counts"].values()) == 6 and d["counts"]["unknown"] == 2  # n4, n5 never heard from
    assert d["breaker"] is None and d["paused"] is None  # remediation not enabled in this app
    # cached: a second call within the second is the same bytes
    a = client.get("/api/v1/overview", headers=h).content
    assert client.get("/api/v1/overview", headers=h).content == a
    assert client.get("/api/v1/overview").status_code == 401


def _target(node: str, fails: list[str], firmware: str = "1.0") -> dict[str, Any]:
    rows = [{"resource": "Chassis", "uri": "/redfish/v1/Chassis/1", "property": p, "requirement": "Mandatory",
             "verdict": "fail", "found": None, "present": False, "message": "missing", "purpose": None}
            for p in fails]
    rows.append({"resource": "Systems", "uri": "/redfish/v1/Systems/1", "property": "PowerState",
                 "requirement": "Mandatory", "verdict": "pass", "found": "On", "present": True, "message": "",
                 "purpose": None})
    return {"target": node, "profile": "P 1.0", "results": rows,
            "summary": {"pass": 1, "warn": 0, "fail": len(fails), "not_tested": 0},
            "service": {"manufacturer": "Acme", "model": "B1", "bmc_firmware": firmware}}


def test_profile_conformance_per_node_and_platform(client: TestClient, store: FleetStore) -> None:
    h = {"Authorization": f"Bearer {VIEWER}"}
    assert client.get("/api/v1/profiles/conformance", headers=h).json() == {"nodes": [], "platforms": []}
    store.transaction(lambda s: save_profile_results(s, [_target("n0", ["IndicatorLED"]), _target("n1", [])],
                                                     profile_name="P", profile_version="1.0", mode="strict"))
    # n0 updated: a new firmware, a second failure — the newest run is the one shown
    store.transaction(lambda s: save_profile_results(s, [_target("n0", ["IndicatorLED", "AssetTag"], "2.0")],
                                                     profile_name="P", profile_version="1.0", mode="strict"))
    d = client.get("/api/v1/profiles/conformance", headers=h).json()
    by_node = {n["node"]: n for n in d["nodes"]}
    assert set(by_node) == {"n0", "n1"}
    assert [f["property"] for f in by_node["n0"]["failing"]] == ["IndicatorLED", "AssetTag"]
    assert by_node["n0"]["firmware"] == "2.0" and by_node["n1"]["failing"] == []
    plat = {(p["vendor"], p["model"], p["firmware"]): p for p in d["platforms"]}
    assert plat[("Acme", "B1", "1.0")]["conformant"] == 1 and plat[("Acme", "B1", "2.0")]["fail"] == 2
    one = client.get("/api/v1/profiles/nodes/n0", headers=h).json()
    assert len(one["history"]) == 2 and len(one["latest"]["failing"]) == 2
    assert one["drift"] is not None and one["drift"]["changes"]
    assert client.get("/api/v1/profiles/conformance").status_code == 401
