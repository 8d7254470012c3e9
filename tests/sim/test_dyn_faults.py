"""Each fault kind changes the surfaces real hardware changes; power cycles and clears follow the catalog."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from redfleet.sim.dyn_node import FleetDyn, UserError
from redfleet.sim.faults import CATALOG, PUBLIC_KINDS, TESTING_KINDS, xid_line
from redfleet.sim.fleet import SimConfig, SimFleet
from redfleet.sim.inband import inband_json, metrics_text

pytestmark = pytest.mark.usefixtures("mockups")

AUTH = {"Authorization": "Basic " + base64.b64encode(b"root:calvin").decode()}


@pytest.fixture
async def fleet() -> AsyncIterator[SimFleet]:
    cfg = SimConfig(nodes=6, http=True, port=0, base_address="127.11.2.1", seed=3, time_scale=400.0,
                    lemons="node-00006")
    async with SimFleet(cfg) as f:
        yield f


def names(fleet: SimFleet) -> dict[str, str]:
    return {n.flavor: n.name for n in fleet.nodes}


def fd_of(fleet: SimFleet) -> FleetDyn:
    assert isinstance(fleet.dynamics, FleetDyn)
    return fleet.dynamics


def last_entries(node: Any, entries: str, n: int = 5) -> list[dict[str, Any]]:
    col = node.get_doc(entries) or {}
    out = []
    for m in (col.get("Members") or [])[-n:]:
        d = node.get_doc(m["@odata.id"])
        if d:
            out.append(d)
    return out


async def wait_for(cond: Any, limit: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def test_catalog_is_complete() -> None:
    want = {"xid", "ecc-dbe", "row-remap", "gpu-lost", "nvlink", "gpu-overtemp", "inlet-overtemp", "fan", "psu",
            "dimm-ce", "nvme-wear", "nvme-media", "os-hang", "bmc-down", "bmc-slow", "bmc-throttle"}
    assert set(PUBLIC_KINDS) == want
    assert set(TESTING_KINDS) == {"session-refuse", "bad-json", "cert-change"}
    assert CATALOG["gpu-lost"].cleared_by_power_cycle and not CATALOG["row-remap"].cleared_by_power_cycle
    assert xid_line(79, 0x3A) == ("NVRM: Xid (PCI:0000:3a:00): 79, pid='<unknown>', name=<unknown>, "
                                  "GPU has fallen off the bus.")
    assert xid_line(13, 0x18, 4242, "python3").startswith("NVRM: Xid (PCI:0000:18:00): 13, pid=4242, name=python3, ")


async def test_gpu_lost_on_hgx_stays_listed_absent_and_power_cycle_brings_it_back(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    node = fleet.node(names(fleet)["dgx"])
    gpu_uri = "/redfish/v1/Systems/HGX_Baseboard_0/Processors/GPU_SXM_3"
    f = fd.inject(node.name, "gpu-lost", gpu=2)
    assert f.xid == 79 and f.clears_on_power_cycle
    st = node.get_doc(gpu_uri)["Status"]
    assert st["State"] == "Absent" and st["Health"] == "Critical"
    assert node.get_doc("/redfish/v1/Chassis/HGX_GPU_SXM_3/Sensors/HGX_GPU_SXM_3_TEMP_0")["Reading"] is None
    # the HMC's XID log and event log, in its words
    xid = last_entries(node, "/redfish/v1/Chassis/HGX_GPU_SXM_3/LogServices/XID/Entries", 1)[0]
    assert "XID 79" in xid["Message"] and xid["MessageId"] == "ResourceEvent.1.0.ResourceErrorsDetected"
    hgx = last_entries(node, "/redfish/v1/Systems/HGX_Baseboard_0/LogServices/EventLog/Entries", 3)
    assert any("GPU_SXM_3" in e["Message"] and e["Severity"] == "Critical" for e in hgx)
    # in-band: DCGM no longer sees it, the kernel log has the Xid
    ib = inband_json(fd.nodes[node.name], nvme=False)
    assert ib["os_state"] == "up" and len(ib["gpus"]) == 7 and ib["gpus_expected"] == 8
    assert any("NVRM: Xid (PCI:0000:3a:00): 79," in line for line in ib["xid_lines"])
    assert 'gpu="2"' not in metrics_text(fd.nodes[node.name])
    node.reset("PowerCycle")
    await wait_for(lambda: node.power_state == "On", 10)
    assert fd.nodes[node.name].faults == []
    assert node.get_doc(gpu_uri)["Status"]["State"] == "Enabled"
    assert fd.nodes[node.name].os_state() == "booting"


async def test_gpu_lost_on_dell_disappears_from_inventory(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    node = fleet.node(names(fleet)["dell"])
    gpu = "/redfish/v1/Systems/System.Embedded.1/Processors/Video.Slot.2-1"
    assert node.get_doc(gpu) is not None
    fd.inject(node.name, "xid", xid=79)
    assert node.get_doc(gpu) is None
    members = [m["@odata.id"] for m in node.get_doc("/redfish/v1/Systems/System.Embedded.1/Processors")["Members"]]
    assert gpu not in members
    assert node.get_doc("/redfish/v1/Systems/System.Embedded.1/PCIeDevices/23-0") is None
    lc = last_entries(node, "/redfish/v1/Managers/iDRAC.Embedded.1/LogServices/Lclog/Entries", 1)[0]
    assert lc["MessageId"].startswith("IDRAC.2.7.PCI") and lc["Severity"] == "Critical"
    fd.clear(node.name)
    assert node.get_doc(gpu) is not None


async def test_ecc_dbe_counters_health_and_xid(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    node = fleet.node(names(fleet)["dgx"])
    nd = fd.nodes[node.name]
    fd.inject(node.name, "ecc-dbe", gpu=1)
    g = next(x for x in inband_json(nd, nvme=False)["gpus"] if x["gpu"] == "1")["fields"]
    assert g["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"] >= 1 and g["DCGM_FI_DEV_ECC_DBE_AGG_TOTAL"] >= 1
    assert g["DCGM_FI_DEV_ROW_REMAP_PENDING"] == 1 and g["DCGM_FI_DEV_XID_ERRORS"] in (48, 63, 94)
    mm = node.get_doc("/redfish/v1/Systems/HGX_Baseboard_0/Processors/GPU_SXM_2/MemorySummary/MemoryMetrics")
    assert mm["LifeTime"]["UncorrectableECCErrorCount"] >= 1
    assert node.get_doc("/redfish/v1/Systems/HGX_Baseboard_0/Processors/GPU_SXM_2")["Status"]["Health"] == "Critical"
    assert any(": 48," in line for line in nd.xids or ())
    node.reset("ForceRestart")
    await wait_for(lambda: node.power_state == "On", 10)
    g = next(x for x in inband_json(nd, nvme=False)["gpus"] if x["gpu"] == "1")["fields"]
    assert g["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"] == 0  # volatile: reset by the reboot
    assert g["DCGM_FI_DEV_ECC_DBE_AGG_TOTAL"] >= 1  # aggregate: kept
    assert g["DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"] >= 1 and g["DCGM_FI_DEV_ROW_REMAP_PENDING"] == 0
    assert nd.faults == []


async def test_row_remap_failure_survives_power_cycle(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    node = fleet.node(names(fleet)["supermicro"])
    nd = fd.nodes[node.name]
    fd.inject(node.name, "row-remap", gpu=4)
    assert inband_json(nd, nvme=False)["gpus"][4]["fields"]["DCGM_FI_DEV_ROW_REMAP_FAILURE"] == 1
    assert node.get_doc("/redfish/v1/Chassis/1/PCIeDevices/GPU5")["Status"]["Health"] == "Critical"
    sel = last_entries(node, "/redfish/v1/Systems/1/LogServices/Log1/Entries", 3)
    assert any("GPU5" in e["Message"] and "Row Remapping" in e["Message"] for e in sel)
    node.reset("PowerCycle")
    await wait_for(lambda: node.power_state == "On", 10)
    assert [f.kind for f in nd.faults] == ["row-remap"]
    # --persistent keeps a power-cycle-clearable fault too
    fd.inject(node.name, "xid", gpu=0, xid=119, persistent=True)
    node.reset("PowerCycle")
    await wait_for(lambda: node.power_state == "On", 10)
    assert sorted(f.kind for f in nd.faults) == ["row-remap", "xid"]


async def test_nvlink_counters_climb(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    node = fleet.node(names(fleet)["dgx"])
    nd = fd.nodes[node.name]
    fd.inject(node.name, "nvlink", gpu=0)
    a = inband_json(nd, nvme=False)["gpus"][0]["fields"]["DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"]
    await asyncio.sleep(0.3)
    b = inband_json(nd, nvme=False)["gpus"][0]["fields"]["DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"]
    assert b > a
    port = node.get_doc(nd.flv.ix.gpus[0].port_metrics[3])
    assert port["Oem"]["Nvidia"]["NVLinkErrors"]["FlitCRCCount"] > 0
    assert any(": 74," in line for line in nd.xids or ())


async def test_gpu_overtemp_and_inlet_overtemp(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    node = fleet.node(names(fleet)["dell"])
    nd = fd.nodes[node.name]
    fd.inject(node.name, "gpu-overtemp")
    assert inband_json(nd, nvme=False)["gpus"][0]["fields"]["DCGM_FI_DEV_GPU_TEMP"] >= 88
    th = node.get_doc("/redfish/v1/Chassis/System.Embedded.1/Thermal")
    gpu_t = next(x for x in th["Temperatures"] if "GPU" in x["Name"])
    assert gpu_t["ReadingCelsius"] >= 88 and gpu_t["Status"]["Health"] == "Critical"
    before = next(x for x in th["Temperatures"] if "Inlet" in x["Name"])["ReadingCelsius"]
    fd.inject(node.name, "inlet-overtemp")
    th = node.get_doc("/redfish/v1/Chassis/System.Embedded.1/Thermal")
    inlet = next(x for x in th["Temperatures"] if "Inlet" in x["Name"])
    assert inlet["ReadingCelsius"] >= before + 15 and inlet["Status"]["Health"] != "OK"
    ids = [e.get("MessageId") for e in last_entries(
        node, "/redfish/v1/Managers/iDRAC.Embedded.1/LogServices/Lclog/Entries", 4)]
    assert "IDRAC.2.7.TMP0115" in ids and "IDRAC.2.7.TMP0121" in ids
    node.reset("PowerCycle")
    await wait_for(lambda: node.power_state == "On", 10)
    assert sorted(f.kind for f in nd.faults) == ["gpu-overtemp", "inlet-overtemp"]  # cooling, not a reboot


async def test_fan_psu_dimm_faults(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    node = fleet.node(names(fleet)["dell"])
    fd.inject(node.name, "fan", target=2)
    fan = node.get_doc("/redfish/v1/Chassis/System.Embedded.1/Thermal")["Fans"][2]
    assert fan["Reading"] == 0 and fan["Status"]["Health"] == "Critical"
    fd.inject(node.name, "psu", target=1)
    ps = node.get_doc("/redfish/v1/Chassis/System.Embedded.1/Power")["PowerSupplies"]
    assert ps[1]["Status"]["Health"] == "Critical" and ps[1]["PowerOutputWatts"] == 0 and ps[0]["PowerOutputWatts"] > 0
    fd.inject(node.name, "dimm-ce", target=0)
    dimm = fd.nodes[node.name].flv.ix.dimms[0]
    assert node.get_doc(dimm)["Status"]["Health"] == "Warning"
    ids = [e.get("MessageId") for e in last_entries(
        node, "/redfish/v1/Managers/iDRAC.Embedded.1/LogServices/Lclog/Entries", 3)]
    assert ids == ["IDRAC.2.7.FAN0001", "IDRAC.2.7.PSU0001", "IDRAC.2.7.MEM0702"]
    sel = last_entries(node, "/redfish/v1/Managers/iDRAC.Embedded.1/LogServices/Sel/Entries", 3)
    assert [e["EntryType"] for e in sel] == ["SEL"] * 3 and "RPM is less than the lower critical" in sel[0]["Message"]
    sysdoc = node.get_doc("/redfish/v1/Systems/System.Embedded.1")
    assert sysdoc["Status"]["HealthRollup"] == "Critical"
    fd.clear(node.name)
    fan = node.get_doc("/redfish/v1/Chassis/System.Embedded.1/Thermal")["Fans"][2]
    assert fan["Reading"] > 0 and fan["Status"]["Health"] == "OK"
    assert last_entries(node, "/redfish/v1/Managers/iDRAC.Embedded.1/LogServices/Lclog/Entries", 1)[0][
        "Severity"] == "OK"  # the deassert


async def test_nvme_faults_show_in_smart_logs(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    node = fleet.node(names(fleet)["dgx"])
    nd = fd.nodes[node.name]
    healthy = inband_json(nd)["nvme"]
    assert healthy and len(healthy[0]["raw"]["smart_02h"]) == 1024 and len(healthy[0]["raw"]["ocp_c0h"]) == 1024
    fd.inject(node.name, "nvme-wear", target=0)
    fd.inject(node.name, "nvme-media", target=1)
    nv = inband_json(nd)["nvme"]
    assert nv[0]["smart"]["percent_used"] >= 100 and nv[0]["smart"]["critical_warning"] & 0x1
    assert nv[0]["smart"]["avail_spare"] < nv[0]["smart"]["spare_thresh"]
    assert nv[1]["smart"]["media_errors"] > 0 and nv[1]["smart"]["critical_warning"] & 0x4
    from redfleet.predict import decode_raw

    raw = decode_raw(bytes.fromhex(nv[0]["raw"]["smart_02h"]), "smart")
    assert raw.fields["percent_used"] >= 100


async def test_os_hang_and_bmc_faults(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    node = fleet.node(names(fleet)["openbmc"])
    nd = fd.nodes[node.name]
    fd.inject(node.name, "os-hang")
    assert nd.os_state() == "hung" and not nd.accepts_reset("GracefulRestart") and nd.accepts_reset("ForceRestart")
    assert inband_json(nd, nvme=False)["stale"] is True
    url = fleet.info(node).bmc_url + "/redfish/v1/Systems"
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.get(url) as r:
            assert r.status == 200  # the BMC does not care
        fd.inject(node.name, "bmc-throttle", params={"status": 503, "fraction": 1.0})
        async with s.get(url) as r:
            assert r.status == 503
        fd.clear(node.name, kind="bmc-throttle")
        fd.inject(node.name, "bmc-down")
        with pytest.raises(aiohttp.ClientError):
            async with s.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                await r.read()
        fd.clear(node.name, kind="bmc-down")
        async with s.get(url) as r:
            assert r.status == 200
        fd.inject(node.name, "bmc-slow", params={"latency": "const:300ms"})
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        async with s.get(url) as r:
            assert r.status == 200
        assert loop.time() - t0 >= 0.25
    node.reset("ForceRestart")
    await wait_for(lambda: node.power_state == "On", 10)
    assert [f.kind for f in nd.faults] == ["bmc-slow"]  # the host reboot fixed the hang, not the BMC


async def test_testing_faults(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    node = fleet.node(names(fleet)["hpe"])
    base = fleet.info(node).bmc_url
    async with aiohttp.ClientSession() as s:
        fd.inject(node.name, "session-refuse")
        async with s.post(base + "/redfish/v1/SessionService/Sessions",
                          json={"UserName": "root", "Password": "calvin"}) as r:
            assert r.status == 503
            assert "SessionLimitExceeded" in (await r.text())
        fd.clear(node.name)
        fd.inject(node.name, "bad-json")
        async with s.get(base + "/redfish/v1/Systems/1", headers=AUTH) as r:
            assert r.status == 200
            with pytest.raises(ValueError):
                await r.json()
        fd.clear(node.name)
    before = fleet.info(node).cert_fingerprint
    fd.inject(node.name, "cert-change")
    assert fleet.info(node).cert_fingerprint != before  # fleet.rotate_certificate was called


async def test_gpu_fault_on_a_node_without_gpus_is_refused(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    with pytest.raises(UserError, match="no GPU"):
        fd.inject(names(fleet)["hpe"], "xid", xid=13)
    with pytest.raises(UserError, match="no GPU 9"):
        fd.inject(names(fleet)["dgx"], "xid", gpu=9)
    with pytest.raises(UserError, match="unknown fault kind"):
        fd.inject(names(fleet)["dgx"], "meltdown")
    with pytest.raises(UserError, match="no simulated node"):
        fd.inject("node-99999", "fan")


async def test_lemon_fails_again_after_repair(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    lemon = "node-00006"
    assert fd.is_lemon(lemon) and not fd.is_lemon("node-00001")
    nd = fd.nodes[lemon]
    fd.inject(lemon, "os-hang")
    fleet.node(lemon).reset("PowerCycle")
    await wait_for(lambda: fleet.node(lemon).power_state == "On", 10)
    assert nd.faults == [] and len(fd.pending) == 1
    # 120..900 simulated seconds later (time scale 400: under 2.5 s) it hangs again
    await wait_for(lambda: any(f.kind == "os-hang" for f in nd.faults), 6)
    assert nd.faults[0].recurrence == 1
    # a good node stays repaired
    fd.inject("node-00001", "fan")
    fd.clear("node-00001")
    assert not any(p[1] == "node-00001" for p in fd.pending)


async def test_bmc_reset_clears_bmc_slow_but_not_hardware(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    node = fleet.node(names(fleet)["ami"])
    nd = fd.nodes[node.name]
    fd.inject(node.name, "bmc-slow", params={"latency": "const:1ms"})
    fd.inject(node.name, "psu", target=0)
    node.manager_reset()
    await wait_for(lambda: not node.down, 10)
    assert [f.kind for f in nd.faults] == ["psu"] and node.slow is None


async def test_telemetry_moves_on_the_wire_and_follows_power(fleet: SimFleet) -> None:
    node = fleet.node(names(fleet)["dgx"])
    base = fleet.info(node).bmc_url
    sensor = "/redfish/v1/Chassis/HGX_GPU_SXM_1/Sensors/HGX_GPU_SXM_1_Power_0"
    seen = set()
    async with aiohttp.ClientSession(headers=AUTH) as s:
        for _ in range(5):
            async with s.get(base + sensor) as r:
                seen.add((await r.json())["Reading"])
            await asyncio.sleep(0.05)  # x400: 20 simulated seconds
        assert len(seen) >= 3
        node.reset("ForceOff")
        async with s.get(base + sensor) as r:
            assert (await r.json())["Reading"] == 0.0
        async with s.get(base + "/redfish/v1/Chassis/DGX/Thermal") as r:
            fans = [f["Reading"] for f in (await r.json())["Fans"]]
        assert fans and all(f == 0 for f in fans)
