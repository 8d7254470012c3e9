"""Inventory snapshots with history: what changed, when, readable by a person."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from redfleet.store import FleetStore, NotFoundError
from redfleet.store.diff import diff_inventories


def inventory() -> dict:
    """An inventory shaped like the client's ``--json`` contract (HGX-like node, 8 GPUs)."""
    return {
        "bmc": {"vendor": "Supermicro", "model": "X13 HGX", "firmware_version": "01.03.10",
                "redfish_version": "1.17.0"},
        "systems": [{"id": "1", "manufacturer": "Supermicro", "model": "SYS-821GE-TNHR", "serial": "S123",
                     "power_state": "On", "bios_version": "2.1", "health": "OK"}],
        "cpus": [{"id": f"CPU{i}", "model": "Xeon 8480+", "location": f"CPU{i}", "health": "OK"} for i in (1, 2)],
        "gpus": [{"id": f"GPU_SXM_{i}", "model": "NVIDIA H100 80GB HBM3", "serial": f"165{i:07d}",
                  "location": f"SXM{i}", "health": "OK", "source": "hgx-baseboard"} for i in range(1, 9)],
        "memory": [{"id": f"DIMM{i}", "capacity_gib": 64, "serial": f"M{i}", "location": f"P0_DIMM{i}"}
                   for i in range(4)],
        "drives": [], "nics": [], "psus": [], "fans": [{"id": "FAN1", "reading_rpm": 9000, "health": "OK"}],
        "firmware": [{"id": "BMC", "name": "BMC", "version": "01.03.10"},
                     {"id": "BIOS", "name": "BIOS", "version": "2.1"},
                     {"id": "HGX_FW_GPU_SXM_1", "name": "HGX_FW_GPU_SXM_1", "version": "96.00.5E.00.01"}],
    }


@pytest.fixture
def node(store, fleet_file) -> str:
    store.import_fleet(fleet_file)
    return "gpu-001"


def test_first_inventory_is_the_baseline(store: FleetStore, node):
    assert store.record_inventory(node, inventory()) == []
    assert len(store.snapshots(node)) == 1
    assert store.latest_inventory(node) == inventory()
    rec = store.node(node)
    assert (rec.vendor, rec.model, rec.serial, rec.health) == ("Supermicro", "SYS-821GE-TNHR", "S123", "OK")
    assert rec.last_inventory_at is not None


def test_gpu_serial_swap_and_firmware_change(store: FleetStore, node):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    store.record_inventory(node, inventory(), at=t0)
    new = inventory()
    new["gpus"][2]["serial"] = "1659999999"  # the GPU in SXM3 was swapped
    new["firmware"][1]["version"] = "2.2"  # BIOS updated
    new["systems"][0]["bios_version"] = "2.2"
    changes = store.record_inventory(node, new, at=t0 + timedelta(hours=1), reason="RMA 4711")
    summaries = [c.summary for c in changes]
    assert "GPU SXM3 replaced: serial 1650000003 → 1659999999 (NVIDIA H100 80GB HBM3)" in summaries
    assert "firmware BIOS: version 2.1 → 2.2" in summaries
    assert "system 1: bios_version 2.1 → 2.2" in summaries
    swap = next(c for c in changes if c.kind == "replaced")
    assert (swap.category, swap.component, swap.field, swap.old, swap.new) == (
        "gpus", "SXM3", "serial", "1650000003", "1659999999")
    assert len(changes) == 3

    # Persisted, newest first, with when.
    history = store.history(node)
    assert [c.summary for c in history] == summaries
    assert all(c.at == t0 + timedelta(hours=1) for c in history)
    assert len(store.snapshots(node)) == 2
    audit = store.audit_log(target=node, action="inventory.record")[0]
    assert audit.reason == "RMA 4711" and audit.details and audit.details["changes"] == 3

    # A later change comes first; fleet-wide history too.
    newer = copy.deepcopy(new)
    newer["gpus"].pop()  # GPU SXM8 gone
    later = store.record_inventory(node, newer, at=t0 + timedelta(days=1))
    assert [c.summary for c in later] == ["GPU SXM8 removed (was NVIDIA H100 80GB HBM3 serial 1650000008)"]
    assert store.history(None, limit=1)[0].summary.startswith("GPU SXM8 removed")


def test_same_hardware_refreshes_without_new_snapshot(store: FleetStore, node):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    store.record_inventory(node, inventory(), at=t0)
    again = inventory()
    again["gpus"][0]["health"] = "Critical"  # health and readings are not inventory
    again["fans"][0]["reading_rpm"] = 12000
    again["systems"][0]["power_state"] = "Off"
    assert store.record_inventory(node, again, at=t0 + timedelta(minutes=5)) == []
    snaps = store.snapshots(node)
    assert len(snaps) == 1
    assert snaps[0].collected_at == t0 and snaps[0].last_seen_at == t0 + timedelta(minutes=5)
    assert store.latest_inventory(node)["fans"][0]["reading_rpm"] == 12000  # the latest readings are kept
    assert store.history(node) == []


def test_unknown_node(store: FleetStore):
    with pytest.raises(NotFoundError, match="no node named 'ghost'"):
        store.record_inventory("ghost", inventory())


def test_pydantic_model_is_accepted(store: FleetStore, node):
    from pydantic import BaseModel

    class Inv(BaseModel):
        gpus: list[dict]
        firmware: list[dict]

    store.record_inventory(node, Inv(gpus=[{"id": "g", "serial": "1"}], firmware=[]))
    changes = store.record_inventory(node, Inv(gpus=[{"id": "g", "serial": "2"}], firmware=[]))
    assert [c.kind for c in changes] == ["replaced"]


def test_events_roundtrip(store: FleetStore, node):
    t = datetime(2026, 2, 1, tzinfo=UTC)
    store.add_event(node, "GPU 3 Xid 79: fell off the bus", severity="Critical", source="redfish-sel",
                    message_id="NVIDIA.1.0.Xid79", payload={"xid": 79, "gpu": "SXM3"}, at=t)
    store.add_event(None, "fleet scan finished", at=t + timedelta(seconds=1))
    events = store.events()
    assert [e.message for e in events] == ["fleet scan finished", "GPU 3 Xid 79: fell off the bus"]
    assert events[1].node == node and events[1].payload == {"xid": 79, "gpu": "SXM3"} and events[1].at == t
    assert [e.severity for e in store.events(node)] == ["Critical"]
    with pytest.raises(ValueError):
        store.add_event(node, "x", severity="bad")


# --- the diff itself (no database)


def test_dell_firmware_ids_embedding_versions_pair_up():
    old = {"firmware": [{"id": "Installed-159-2.19.1", "name": "BIOS", "version": "2.19.1"},
                        {"id": "Installed-25227-7.00.00.171", "name": "iDRAC", "version": "7.00.00.171"},
                        {"id": "Installed-0-1", "name": "NIC", "version": "1"},
                        {"id": "Installed-0-2", "name": "NIC", "version": "1"}]}
    new = copy.deepcopy(old)
    new["firmware"][0].update(id="Installed-159-2.20.0", version="2.20.0")
    assert [c.summary for c in diff_inventories(old, new)] == ["firmware BIOS: version 2.19.1 → 2.20.0"]


def test_added_and_removed_components():
    old = {"drives": [{"id": "Disk.0", "location": "Bay 0", "model": "PM1733", "serial": "D0"}]}
    new = {"drives": [{"id": "Disk.1", "location": "Bay 1", "model": "PM1743", "serial": "D1"},
                      {"id": "Disk.2", "location": "Bay 2", "model": "PM1743", "serial": "D2"}]}
    kinds = sorted((c.kind, c.component) for c in diff_inventories(old, new))
    assert kinds == [("added", "Bay 1"), ("added", "Bay 2"), ("removed", "Bay 0")]


def test_session_and_transaction_for_other_tables(store: FleetStore):
    """Areas with tables of their own (ssd) use the store's sessions; their tables exist after migration."""
    from redfleet.store.ssd import append_sample, read_history

    t = datetime(2026, 3, 1, tzinfo=UTC)
    with store.session(write=True) as session:
        append_sample(session, "S1", t, smart={"percent_used": 3}, source="sim", node_id="gpu-001")
    points = store.transaction(lambda s: read_history(s, "S1"), write=False)
    assert [p.smart for p in points] == [{"percent_used": 3}]
