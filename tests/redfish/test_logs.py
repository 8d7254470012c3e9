"""read_sel: the hardware event log of every simulator flavor and captured tree, newest first, paged, normalized.
Addresses: 127.5.0.0/16 (this area's block)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from redfleet.paths import mockups_dir
from redfleet.redfish.client import RedfishClient
from redfleet.redfish.errors import ActionNotSupported
from redfleet.redfish.logs import SEL_FIELDS, find_log_services, rank_log_service, read_sel

FAULT_ORDER = ("fan", "psu", "inlet-overtemp")


def _check_shape(entries: list[dict]) -> None:
    for e in entries:
        assert tuple(e) == SEL_FIELDS
        assert e["uri"] and e["id"]
    stamps = [e["created"] for e in entries if e["created"]]
    assert stamps == sorted(stamps, reverse=True), "not newest first"


async def test_every_sim_flavor_shows_the_fault_first() -> None:
    try:
        from redfleet.sim import SimConfig, SimFleet
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"simulator not importable: {exc}")
    flavors = ("dell", "hpe", "supermicro", "dgx", "ami", "openbmc")
    cfg = SimConfig(mix={f: 1 for f in flavors}, port=0, http=True, base_address="127.5.1.1", seed=2)
    async with SimFleet(cfg) as fleet:
        dyn = getattr(fleet, "dynamics", None)
        if dyn is None:
            pytest.skip("simulator fault engine not available")
        seen = set()
        for node in fleet.nodes:
            for kind in FAULT_ORDER:
                try:
                    dyn.inject(node.name, kind, target=0)
                    break
                except Exception:  # this flavor has no such part: try the next kind
                    continue
            else:
                pytest.fail(f"{node.flavor}: none of {FAULT_ORDER} could be injected")
            before = datetime.now(UTC) - timedelta(minutes=2)
            async with RedfishClient(node.bmc_url, "root", "calvin", verify=False) as c:
                entries = await read_sel(c, limit=3)
            assert 1 <= len(entries) <= 3, node.flavor
            _check_shape(entries)
            top = entries[0]
            assert top["severity"] in ("Warning", "Critical"), (node.flavor, top)
            assert datetime.fromisoformat(top["created"].replace("Z", "+00:00")) >= before, (node.flavor, top)
            seen.add(node.flavor)
        assert seen == set(flavors)


async def test_oldest_first_log_is_paged_to_its_end() -> None:
    """Supermicro's health log lists 82 captured entries oldest first, 50 a page (simulator page size)."""
    try:
        from redfleet.sim import SimConfig, SimFleet
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"simulator not importable: {exc}")
    cfg = SimConfig(mix={"supermicro": 1}, port=0, http=True, base_address="127.5.2.1", seed=2, dynamics=False)
    async with SimFleet(cfg) as fleet:
        async with RedfishClient(fleet.nodes[0].bmc_url, "root", "calvin", verify=False) as c:
            svcs = await find_log_services(c)
            entries = await read_sel(c, limit=60)
            few = await read_sel(c, limit=5)
    assert svcs[0].uri.endswith("/Systems/1/LogServices/Log1") and svcs[0].rank == 0
    ids = [int(e["id"]) for e in entries]
    assert len(ids) == 60
    assert ids[0] == max(ids) and len(set(ids)) == 60
    assert [int(e["id"]) for e in few] == sorted(ids, reverse=True)[:5]


def _tree(tmp_path: Path, n: int, top_skip: bool) -> Path:
    base = tmp_path / "redfish" / "v1"

    def put(rel: str, doc: dict) -> None:
        d = base / rel if rel else base
        d.mkdir(parents=True, exist_ok=True)
        (d / "index.json").write_text(json.dumps(doc))

    root = {"@odata.id": "/redfish/v1", "Id": "RootService", "RedfishVersion": "1.15.0",
            "Managers": {"@odata.id": "/redfish/v1/Managers"}, "Systems": {"@odata.id": "/redfish/v1/Systems"},
            "ProtocolFeaturesSupported": {"TopSkipQuery": top_skip}}
    put("", root)
    put("Systems", {"@odata.id": "/redfish/v1/Systems", "Members": []})
    put("Managers", {"@odata.id": "/redfish/v1/Managers", "Members": [{"@odata.id": "/redfish/v1/Managers/1"}]})
    put("Managers/1", {"@odata.id": "/redfish/v1/Managers/1", "Id": "1",
                       "LogServices": {"@odata.id": "/redfish/v1/Managers/1/LogServices"}})
    put("Managers/1/LogServices", {"@odata.id": "/redfish/v1/Managers/1/LogServices", "Members": [
        {"@odata.id": "/redfish/v1/Managers/1/LogServices/Audit"},
        {"@odata.id": "/redfish/v1/Managers/1/LogServices/Hw"}]})
    put("Managers/1/LogServices/Audit", {"@odata.id": "/redfish/v1/Managers/1/LogServices/Audit", "Id": "Audit",
                                         "Name": "Audit Log", "LogEntryType": "Event"})
    put("Managers/1/LogServices/Hw", {"@odata.id": "/redfish/v1/Managers/1/LogServices/Hw", "Id": "Hw",
                                      "Name": "Hardware log", "LogEntryType": "SEL",
                                      "Entries": {"@odata.id": "/redfish/v1/Managers/1/LogServices/Hw/Entries"}})
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    members = [{"@odata.id": f"/redfish/v1/Managers/1/LogServices/Hw/Entries/{i}", "Id": str(i),
                "Created": (t0 + timedelta(minutes=i)).isoformat(), "Severity": "OK", "Message": f"entry {i}",
                "MessageId": "Event.1.0.Test", "EntryType": "SEL", "SensorNumber": i % 7} for i in range(1, n + 1)]
    put("Managers/1/LogServices/Hw/Entries", {"@odata.id": "/redfish/v1/Managers/1/LogServices/Hw/Entries",
                                              "Members": members, "Members@odata.count": n})
    return tmp_path


@pytest.mark.parametrize("top_skip", [True, False])
async def test_skip_to_the_tail_only_when_advertised(tmp_path: Path, top_skip: bool) -> None:
    from redfleet.redfish.testing import MockupBMC

    tree = _tree(tmp_path, 300, top_skip)
    async with MockupBMC(tree, address="127.5.3.1" if top_skip else "127.5.3.2", page_size=50) as bmc:
        async with RedfishClient(bmc.url, "root", "calvin", verify=False) as c:
            entries = await read_sel(c, limit=5)
        entry_reads = [p for m, p in bmc.requests if m == "GET" and "/Hw/Entries" in p]
    assert [e["id"] for e in entries] == ["300", "299", "298", "297", "296"]
    assert entries[0]["created"] == "2025-01-01T05:00:00Z" and entries[0]["sensor_number"] == 300 % 7
    assert entries[0]["log"] == "Hw" and entries[0]["message_id"] == "Event.1.0.Test"
    if top_skip:  # first page, then straight to the tail
        assert len(entry_reads) == 2 and any("$skip=295" in p for p in entry_reads), entry_reads
    else:  # no $skip without the root saying so: the pages are walked
        assert len(entry_reads) == 6 and not any("$top" in p for p in entry_reads), entry_reads


async def test_no_sel_like_service_is_a_clear_error(tmp_path: Path) -> None:
    from redfleet.redfish.testing import MockupBMC

    tree = _tree(tmp_path, 1, False)
    (tree / "redfish/v1/Managers/1/LogServices/index.json").write_text(json.dumps(
        {"@odata.id": "/redfish/v1/Managers/1/LogServices",
         "Members": [{"@odata.id": "/redfish/v1/Managers/1/LogServices/Audit"}]}))
    async with MockupBMC(tree, address="127.5.3.3") as bmc:
        async with RedfishClient(bmc.url, "root", "calvin", verify=False) as c:
            with pytest.raises(ActionNotSupported, match="no SEL-like log service"):
                await read_sel(c)


def test_ranking_from_what_the_service_says() -> None:
    assert rank_log_service({"Id": "Sel", "LogEntryType": "SEL"}) == 0
    assert rank_log_service({"Id": "Log1", "Name": "Health Event Log Service", "LogEntryType": "SEL"}) == 0
    assert rank_log_service({"Id": "IML", "Name": "Integrated Management Log"}) == 1
    assert rank_log_service({"Id": "Lclog"}) == 2
    assert rank_log_service({"Id": "EventLog"}) == 3
    assert rank_log_service({"Id": "Log1", "Name": "Maintenance Event Log Service", "LogEntryType": "OEM"}) == 5
    for skipped in ("AuditLog", "Journal", "Dump", "DiagnosticLog", "BIOS", "HostLogger", "FaultList"):
        assert rank_log_service({"Id": skipped}) is None, skipped


CAPTURES = {  # tree -> (log service Ids read, newest entry Id)
    "dell": ({"Sel"}, "1024"),
    "supermicro": ({"Log1"}, None),
    "Gigabyte": ({"SEL"}, None),
    "hpe": ({"IML"}, None),
    "nvidia_viking": ({"SEL"}, None),
    "public-rackmount1": ({"Log", "Log1"}, None),  # two generic logs, neither typed: both read
}


@pytest.mark.parametrize("name", sorted(CAPTURES))
async def test_captured_trees(name: str) -> None:
    tree = mockups_dir() / name
    if not (tree / "redfish" / "v1").is_dir():
        pytest.skip(f"captured tree {tree} is absent (set REDFLEET_SHARED or check out ../shared)")
    from redfleet.redfish.testing import MockupBMC

    log_ids, newest = CAPTURES[name]
    n = sorted(CAPTURES).index(name)
    async with MockupBMC(tree, address=f"127.5.4.{n + 1}") as bmc:
        async with RedfishClient(bmc.url, "root", "calvin", verify=False) as c:
            entries = await read_sel(c, limit=4)
    assert entries, name
    _check_shape(entries)
    assert {e["log"] for e in entries} <= log_ids
    if newest is not None:
        assert entries[0]["id"] == newest
