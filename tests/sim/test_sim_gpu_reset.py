"""In-band remediation in the simulator: a GPU reset clears what lives in the GPU's own state (not a GPU off the
bus, not a spent row remapper), an OS reboot is a GracefulRestart; neither runs on a hung, down or booting host."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from redfleet.sim.dyn_node import FleetDyn, SimError, UserError
from redfleet.sim.faults import CATALOG, PUBLIC_KINDS, Fault
from redfleet.sim.fleet import SimConfig, SimFleet

pytestmark = pytest.mark.usefixtures("mockups")


@pytest.fixture
async def fleet() -> AsyncIterator[SimFleet]:
    cfg = SimConfig(nodes=6, http=True, port=0, base_address="127.4.1.1", seed=5, time_scale=400.0,
                    control_port=0)
    async with SimFleet(cfg) as f:
        yield f


def fd_of(fleet: SimFleet) -> FleetDyn:
    assert isinstance(fleet.dynamics, FleetDyn)
    return fleet.dynamics


def dgx(fleet: SimFleet) -> str:
    return next(n.name for n in fleet.nodes if n.flavor == "dgx")


def no_gpu_node(fleet: SimFleet) -> str:
    fd = fd_of(fleet)
    return next(n.name for n in fleet.nodes if not fd.node(n.name).flv.ix.gpus)


async def wait_for(cond: Any, limit: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def test_catalog_says_what_a_gpu_reset_clears() -> None:
    cleared = {k for k in PUBLIC_KINDS if CATALOG[k].cleared_by_gpu_reset}
    assert cleared == {"xid", "ecc-dbe", "nvlink"}
    assert CATALOG["xid"].to_json()["cleared_by_gpu_reset"] is True
    assert Fault("xid", "n", target=0, xid=48).clears_on_gpu_reset
    assert not Fault("xid", "n", target=0, xid=79).clears_on_gpu_reset  # off the bus: power cycle only
    assert not Fault("xid", "n", target=0, xid=48, persistent=True).clears_on_gpu_reset
    assert not Fault("gpu-lost", "n", target=0, xid=79).clears_on_gpu_reset
    assert not Fault("row-remap", "n", target=0, xid=64).clears_on_gpu_reset
    assert Fault("xid", "n", target=0, xid=31).to_json()["cleared_by_gpu_reset"] is True


async def test_gpu_reset_clears_that_gpus_resettable_faults_and_volatile_ecc(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    name = dgx(fleet)
    nd = fd.node(name)
    t = nd.now()
    before = nd.ecc(1, t)
    dbe = fd.inject(name, "ecc-dbe", gpu=1)
    hot = fd.inject(name, "gpu-overtemp", gpu=1)
    other = fd.inject(name, "xid", gpu=2, xid=13)
    sticky = fd.inject(name, "nvlink", gpu=1, persistent=True)
    e = nd.ecc(1, nd.now())
    assert e["dbe_vol"] == 1 and e["rr_pending"] == 1
    n_log = len(fd.history)

    gone = fd.gpu_reset(name, 1)

    assert [f.id for f in gone] == [dbe.id]
    assert {f.id for f in nd.faults} == {hot.id, other.id, sticky.id}
    e = nd.ecc(1, nd.now())
    assert e["dbe_vol"] == 0 and e["rr_pending"] == 0 and e["rr_unc"] == before["rr_unc"] + 1
    assert e["dbe_agg"] == before["dbe_agg"] + 1  # aggregate counters survive a reset
    assert e["sbe_vol"] < 8  # volatile counts restart at the reset
    ev = [h for h in list(fd.history)[n_log:] if h.get("event") == "gpu-reset"]
    assert ev == [{"t": ev[0]["t"], "event": "gpu-reset", "node": name, "gpu": 1, "cleared": [dbe.id]}]
    assert any(h.get("event") == "clear" and h["cause"] == "gpu-reset (GPU 1)" for h in fd.history)
    # and the BMC logged it
    node = fleet.node(name)
    ix = nd.flv.ix
    log = (ix.logs.get("hgx") or ix.logs.get("event") or ix.logs["sel"]).uri
    col = node.get_doc(log + "/Entries") or {}
    last = node.get_doc(col["Members"][-1]["@odata.id"]) or {}
    assert "was reset from the host" in last.get("Message", "") or any(
        "was reset from the host" in (node.get_doc(m["@odata.id"]) or {}).get("Message", "")
        for m in col["Members"][-8:])


async def test_gpu_off_the_bus_cannot_be_reset_and_row_remap_failure_stays(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    name = dgx(fleet)
    lost = fd.inject(name, "xid", gpu=3, xid=79)
    with pytest.raises(SimError, match="fallen off the bus"):
        fd.gpu_reset(name, 3)
    assert lost in fd.node(name).faults
    fd.clear(name)
    rr = fd.inject(name, "row-remap", gpu=0)
    assert fd.gpu_reset(name, 0) == []
    assert fd.node(name).faults == [rr] and fd.node(name).ecc(0, fd.now())["rr_failure"] == 1


async def test_bad_requests_are_user_errors(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    name = dgx(fleet)
    n = len(fd.node(name).flv.ix.gpus)
    with pytest.raises(UserError, match=f"no GPU {n}"):
        fd.gpu_reset(name, n)
    with pytest.raises(UserError, match="has no GPU"):
        fd.gpu_reset(no_gpu_node(fleet), 0)
    with pytest.raises(UserError, match="no simulated node"):
        fd.gpu_reset("node-99999", 0)


async def test_hung_os_runs_nothing_and_cannot_reboot_itself(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    name = dgx(fleet)
    fd.inject(name, "ecc-dbe", gpu=0)
    fd.inject(name, "os-hang")
    with pytest.raises(SimError, match="host OS is hung"):
        fd.gpu_reset(name, 0)
    with pytest.raises(SimError, match="host OS is hung"):
        fd.os_reboot(name)
    assert fleet.node(name).power_state == "On"
    assert {f.kind for f in fd.node(name).faults} == {"ecc-dbe", "os-hang"}


async def test_os_reboot_is_a_graceful_restart_that_clears_what_a_power_cycle_clears(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    name = dgx(fleet)
    nd = fd.node(name)
    fd.inject(name, "gpu-lost", gpu=4)
    rr = fd.inject(name, "row-remap", gpu=5)
    fd.os_reboot(name)
    assert fleet.node(name).power_state == "PoweringOff" and nd.os_state() == "down"
    with pytest.raises(SimError, match="host OS is down"):
        fd.gpu_reset(name, 0)
    with pytest.raises(SimError, match="down"):
        fd.os_reboot(name)
    await wait_for(lambda: nd.os_state() == "booting" and fleet.node(name).power_state == "On")
    with pytest.raises(SimError, match="booting"):
        fd.gpu_reset(name, 0)
    await wait_for(lambda: nd.os_state() == "up")
    assert nd.faults == [rr]  # the GPU is back on the bus; the spent remapper still needs an RMA
    assert any(h.get("event") == "os-reboot" and h["node"] == name for h in fd.history)


async def test_lemon_fails_again_after_a_gpu_reset(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    name = dgx(fleet)
    fd.lemons.add(name)
    f = fd.inject(name, "xid", gpu=6, xid=48)
    assert fd.gpu_reset(name, 6) == [f]
    assert [p[1] for p in fd.pending] == [name]
    # 120..900 simulated seconds later (time scale 400: under 2.5 s) the same Xid is back
    await wait_for(lambda: any(g.kind == "xid" and g.xid == 48 for g in fd.node(name).faults), 6)
    assert fd.node(name).faults[0].recurrence == 1


async def test_control_api_gpu_reset_os_reboot_and_fault_clear_still_work(fleet: SimFleet) -> None:
    fd = fd_of(fleet)
    name = dgx(fleet)
    base = fleet.control_url
    assert base
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        async with s.post(f"{base}/nodes/{name}/faults", json={"kind": "ecc-dbe", "gpu": 2}) as r:
            assert r.status == 201
            fid = (await r.json())["id"]
        async with s.post(f"{base}/nodes/{name}/gpu-reset", json={"gpu": 2}) as r:
            assert r.status == 200
            doc = await r.json()
            assert doc["gpu"] == 2 and [c["id"] for c in doc["cleared"]] == [fid]
        async with s.post(f"{base}/nodes/{name}/gpu-reset", json={"gpu": "two"}) as r:
            assert r.status == 400 and "GPU index" in (await r.json())["error"]
        async with s.post(f"{base}/nodes/{name}/gpu-reset", json={"gpu": 99}) as r:
            assert r.status == 400 and "no GPU 99" in (await r.json())["error"]
        async with s.get(f"{base}/faults/catalog") as r:
            cat = {c["kind"]: c for c in await r.json()}
            assert cat["ecc-dbe"]["cleared_by_gpu_reset"] and not cat["gpu-lost"]["cleared_by_gpu_reset"]
        # sim fault / clear as before
        async with s.post(f"{base}/nodes/{name}/faults", json={"kind": "fan", "target": 0}) as r:
            assert r.status in (201, 400)  # the DGX may show no fan of its own
        async with s.post(f"{base}/nodes/{name}/faults", json={"kind": "os-hang"}) as r:
            assert r.status == 201
        async with s.post(f"{base}/nodes/{name}/os-reboot") as r:
            assert r.status == 409 and "hung" in (await r.json())["error"]
        async with s.post(f"{base}/nodes/{name}/gpu-reset", json={"gpu": 0}) as r:
            assert r.status == 409
        async with s.delete(f"{base}/nodes/{name}/faults") as r:
            assert r.status == 200 and (await r.json())["cleared"]
        assert fd.node(name).faults == []
        async with s.post(f"{base}/nodes/{name}/os-reboot") as r:
            assert r.status == 202 and (await r.json())["os_state"] == "down"
        async with s.post(f"{base}/nodes/node-99999/os-reboot") as r:
            assert r.status == 404
