"""The RMA evidence bundle: gathered from a simulated DGX node (store, telemetry hub, its BMC's SEL), from an IPMI
node, and with parts failing or hanging (recorded under "errors", never raised). Addresses: 127.5.0.0/16."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from redfleet.redfish.fleet import NodeTarget
from redfleet.remediation.evidence import SCHEMA, collect_evidence, evidence_json, suspect_parts
from redfleet.store import FleetStore, KeyRing

KEYS = {"schema", "node", "collected_at", "reasons", "suspect_parts", "xids", "events", "sensors", "inventory",
        "inventory_changes", "health_history", "sel", "workflow", "errors"}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = FleetStore(f"sqlite:///{tmp_path / 'fleet.db'}", keyring=KeyRing.from_key(Fernet.generate_key().decode()),
                   actor="tester")
    try:
        yield s
    finally:
        s.close()


async def test_bundle_from_a_simulated_dgx(store: FleetStore) -> None:
    try:
        from redfleet.sim import SimConfig, SimFleet
        from redfleet.sim.inband import inband_json
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"simulator not importable: {exc}")
    from redfleet.redfish.client import RedfishClient
    from redfleet.redfish.inventory import collect_inventory
    from redfleet.store.health import add_health_changes
    from redfleet.telemetry.hub import Hub
    from redfleet.telemetry.series import SeriesStore

    cfg = SimConfig(mix={"dgx": 1}, port=0, http=True, base_address="127.5.10.1", seed=4)
    async with SimFleet(cfg) as fleet:
        dyn = fleet.dynamics
        name = fleet.nodes[0].name
        store.import_fleet(fleet.fleet_file())
        async with RedfishClient(fleet.nodes[0].bmc_url, "root", "calvin", verify=False) as c:
            inv = (await collect_inventory(c)).model_dump(mode="json")
        store.record_inventory(name, inv)
        # the in-band agent's view of the GPUs: index -> UUID (what serve's hub keeps from each batch)
        idents = [{"gpu": int(g["gpu"]), "uuid": g["UUID"], "pci_bus_id": g["pci_bus_id"], "model": g["modelName"],
                   "serial": None} for g in inband_json(dyn.node(name))["gpus"]]
        dyn.inject(name, "fan", target=0)
        store.add_event(name, "NVRM: Xid (PCI:0000:3a:00): 48, pid=1, DBE", severity="Warning", source="agent",
                        message_id="Xid 48", payload={"kind": "xid", "gpu": 3, "code": 48})
        store.add_event(name, "power cycled", source="redfleet")
        reason = {"rule": "xid.48", "severity": "critical", "component": "gpu:3", "message": "Xid 48", "since": 1.0}
        store.transaction(lambda s: add_health_changes(s, [(name, datetime.now(UTC), "healthy", "unhealthy",
                                                            [reason])]))
        hub = Hub(None, SeriesStore(), engine=None, persist=False)
        hub.add_node(name).gpus = idents
        now = time.time()
        hub.series.add(name, "DCGM_FI_DEV_GPU_TEMP", 71.0, now - 5, gpu=3)
        hub.series.add(name, "DCGM_FI_DEV_GPU_TEMP", 75.0, now, gpu=3)
        hub.series.add(name, "redfish_fan", 0.0, now, labels={"sensor": "FAN1"})
        fan_id = inv["fans"][0]["id"]
        reasons = [reason, {"rule": "fan-failed", "component": f"fan:{fan_id}"}, {"rule": "os", "component": "node"}]
        bundle = await collect_evidence(name, reasons=reasons, store=store, hub=hub, workflow={"id": 7, "rung": 3},
                                        timeout=20)

    assert set(bundle) == KEYS and bundle["schema"] == SCHEMA and bundle["node"] == name
    assert bundle["errors"] == []
    assert bundle["collected_at"].endswith("Z")
    gpu_inv = {g["uuid"].lower(): g for g in inv["gpus"] if g.get("uuid")}
    want_gpu = gpu_inv[idents[3]["uuid"].lower().removeprefix("gpu-")]
    parts = {p["component"]: p for p in bundle["suspect_parts"]}
    assert set(parts) == {"gpu:3", f"fan:{fan_id}"}  # the node-level reason names no part
    assert parts["gpu:3"]["serial"] == want_gpu["serial"] and parts["gpu:3"]["serial"]
    assert parts["gpu:3"]["matched_by"] == "uuid" and parts["gpu:3"]["kind"] == "gpu"
    assert parts["gpu:3"]["uri"] == want_gpu["source"] and parts["gpu:3"]["model"] == want_gpu["model"]
    assert parts[f"fan:{fan_id}"]["matched_by"] == "id" and parts[f"fan:{fan_id}"]["kind"] == "fan"
    assert [(x["code"], x["gpu"]) for x in bundle["xids"]] == [(48, 3)]
    assert len(bundle["events"]) == 2
    temps = [s for s in bundle["sensors"] if s["metric"] == "DCGM_FI_DEV_GPU_TEMP"]
    assert [(s["gpu"], s["value"]) for s in temps] == [(3, 75.0)]
    assert any(s["metric"] == "redfish_fan" and s["labels"] == {"sensor": "FAN1"} for s in bundle["sensors"])
    assert bundle["inventory"]["gpus"] and bundle["inventory_changes"] == []
    assert [h["new"] for h in bundle["health_history"]] == ["unhealthy"]
    assert bundle["sel"] and bundle["sel"][0]["severity"] in ("Warning", "Critical")
    assert bundle["sel"][0]["log"] == "SEL"
    assert bundle["workflow"] == {"id": 7, "rung": 3}
    text = evidence_json(bundle)
    assert text == evidence_json(json.loads(text))  # stable: the export of the export is the same
    assert text.index('"collected_at"') < text.index('"errors"') < text.index('"node"')  # sorted keys


async def test_every_failing_part_is_recorded_not_raised() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers (a hung BMC) until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.5.11.2", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        t0 = time.monotonic()
        bundle = await collect_evidence(
            "node-x", reasons=[{"component": "gpu:0"}],
            target=NodeTarget("node-x", f"http://127.5.11.2:{port}", "root", "calvin"), timeout=1.0)
        elapsed = time.monotonic() - t0
    finally:
        server.close()
    assert elapsed < 5, elapsed
    assert set(bundle) == KEYS
    parts = {e.split(":", 1)[0] for e in bundle["errors"]}
    assert parts == {"inventory", "events", "inventory_changes", "health_history", "sel", "sensors"}, bundle["errors"]
    assert any(e.startswith("sel: ") for e in bundle["errors"])
    assert bundle["sel"] == [] and bundle["inventory"] is None
    # an unmatched suspect is still listed, without a serial
    assert bundle["suspect_parts"] == [{"component": "gpu:0", "kind": "gpu", "serial": None, "part_number": None,
                                        "model": None, "location": None, "uri": None, "matched_by": None}]
    json.loads(evidence_json(bundle))


async def test_refused_bmc_and_unknown_node(store: FleetStore) -> None:
    bundle = await collect_evidence("nowhere", reasons=[], store=store,
                                    target=NodeTarget("nowhere", "http://127.5.11.3:9", "root", "calvin"),
                                    tls_mode="insecure", timeout=3.0)
    errs = {e.split(":", 1)[0]: e for e in bundle["errors"]}
    assert "sel" in errs and "inventory" in errs and "nowhere" in errs["inventory"]


async def test_sel_of_an_ipmi_node() -> None:
    try:
        from redfleet.sim.ipmi import IpmiFleetThread
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"IPMI simulator unavailable: {exc}")
    sim = IpmiFleetThread(["127.5.21.1"], port=16251)
    sim.start()
    try:
        node = sim.fleet.nodes[0]
        sim.call(lambda: node.inject("psu", psu=2))
        bundle = await collect_evidence("legacy", reasons=[], target=NodeTarget(
            "legacy", "ipmi://127.5.21.1:16251", "root", "calvin"), timeout=10)
    finally:
        sim.stop()
    assert not any(e.startswith("sel") for e in bundle["errors"])
    assert bundle["sel"][0]["log"] == "ipmi-sel" and "PS2 Status" in bundle["sel"][0]["message"]


def test_suspect_parts_matching() -> None:
    inv = {"gpus": [{"id": "GPU_SXM_1", "serial": "S1", "uuid": "aaa"}, {"id": "GPU_SXM_2", "serial": "S2"}],
           "psus": [{"id": "PSU1", "serial": "P1", "part_number": "PN-1", "location": "rear"}],
           "memory": [{"id": "DIMM_A1", "serial": "M1", "memory_type": "DDR5"}]}
    idents = [{"gpu": 0, "uuid": "GPU-AAA", "pci_bus_id": "00000000:18:00.0"}]
    reasons = [{"component": "gpu:1"}, {"component": "gpu:pci:0000:18:00.0"}, {"component": "psu:PSU1"},
               {"component": "dimm:DIMM_A1"}, {"component": "node"}, {"component": "gpu:GPU_SXM_2"},
               {"component": "drive:nvme9"}, {"component": "psu:PSU1"}]
    parts = suspect_parts(reasons, inv, idents)
    got = {p["component"]: (p["serial"], p["matched_by"]) for p in parts}
    assert got == {"gpu:1": ("S2", "position"), "gpu:pci:0000:18:00.0": ("S1", "uuid"), "psu:PSU1": ("P1", "id"),
                   "dimm:DIMM_A1": ("M1", "id"), "gpu:GPU_SXM_2": ("S2", "id"), "drive:nvme9": (None, None)}
    psu = next(p for p in parts if p["component"] == "psu:PSU1")
    assert psu["part_number"] == "PN-1" and psu["location"] == "rear" and psu["kind"] == "psu"
