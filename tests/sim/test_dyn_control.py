"""Control API, the `redfleet sim fault/clear` CLI against it, scenarios, and the in-band /metrics listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from redfleet.sim.dyn_node import FleetDyn
from redfleet.sim.fleet import SimConfig, SimFleet
from redfleet.sim.scenario import parse_scenario

pytestmark = pytest.mark.usefixtures("mockups")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


@pytest.fixture
async def fleet() -> AsyncIterator[SimFleet]:
    cfg = SimConfig(nodes=6, http=True, port=0, base_address="127.11.4.1", seed=11, time_scale=200.0,
                    control_port=0)
    async with SimFleet(cfg) as f:
        yield f


def cli_app():  # type: ignore[no-untyped-def]
    from redfleet.cli.main import app

    return app


async def test_control_api_round_trip(fleet: SimFleet) -> None:
    url = fleet.control_url
    assert url
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/nodes") as r:
            nodes = await r.json()
        assert len(nodes) == 6 and {n["os_state"] for n in nodes} == {"up"}
        dgx = next(n["name"] for n in nodes if n["flavor"] == "dgx")
        async with s.post(url + f"/nodes/{dgx}/faults", json={"kind": "xid", "gpu": 5, "xid": 48}) as r:
            assert r.status == 201
            fault = await r.json()
        assert fault["gpu"] == 5 and fault["xid"] == 48 and fault["cleared_by_power_cycle"] is True
        async with s.get(url + "/faults") as r:
            assert [f["id"] for f in (await r.json())["active"]] == [fault["id"]]
        async with s.get(url + f"/nodes/{dgx}/inband") as r:
            ib = await r.json()
        assert ib["os_state"] == "up" and len(ib["gpus"]) == 8
        assert ib["gpus"][5]["fields"]["DCGM_FI_DEV_XID_ERRORS"] == 48
        assert any("PCI:0000:ab:00): 48," in line for line in ib["xid_lines"])
        assert ib["nvme"] and "smart" in ib["nvme"][0] and "ocp_c0h" in ib["nvme"][0]
        async with s.get(url + f"/nodes/{dgx}/metrics") as r:
            text = await r.text()
        assert 'DCGM_FI_DEV_XID_ERRORS{gpu="5",UUID="GPU-' in text
        async with s.post(url + f"/nodes/{dgx}/faults", json={"kind": "fan", "target": 99}) as r:
            assert r.status == 400 and "no fan 99" in (await r.json())["error"]
        async with s.post(url + "/nodes/node-42/faults", json={"kind": "fan"}) as r:
            assert r.status == 404
        async with s.get(url + "/faults/catalog") as r:
            assert len(await r.json()) == 19
        async with s.delete(url + f"/nodes/{dgx}/faults") as r:
            assert [f["id"] for f in (await r.json())["cleared"]] == [fault["id"]]
        async with s.get(url + "/faults") as r:
            assert (await r.json())["active"] == []


async def test_cli_fault_and_clear_against_the_control_api(fleet: SimFleet) -> None:
    runner = CliRunner()
    url = fleet.control_url
    fd = fleet.dynamics
    assert isinstance(fd, FleetDyn) and url
    app = cli_app()
    res = await asyncio.to_thread(runner.invoke, app, ["sim", "fault", "node-00004", "xid", "--gpu", "2", "--xid",
                                                       "79", "--control", url])
    assert res.exit_code == 0, res.output
    assert "node-00004: fault" in res.output and "Xid 79" in res.output and "power cycle clears it" in res.output
    assert [(f.kind, f.target, f.xid) for f in fd.nodes["node-00004"].faults] == [("xid", 2, 79)]
    res = await asyncio.to_thread(runner.invoke, app, ["sim", "fault", "node-00001", "fan", "--target", "1",
                                                       "--persistent", "--control", url])
    assert res.exit_code == 0 and "does not clear it" in res.output
    res = await asyncio.to_thread(runner.invoke, app, ["sim", "fault", "node-00002", "xid", "--control", url])
    assert res.exit_code == 1 and "no GPU" in res.output
    res = await asyncio.to_thread(runner.invoke, app, ["sim", "clear", "node-00004", "--control", url])
    assert res.exit_code == 0 and "cleared 1 fault" in res.output
    assert fd.nodes["node-00004"].faults == []
    res = await asyncio.to_thread(runner.invoke, app, ["sim", "fault", "node-00004", "xid", "--control",
                                                       "http://127.0.0.1:9"])
    assert res.exit_code == 1 and "cannot reach" in res.output


def test_cli_help_lists_public_kinds_and_marks_testing_ones() -> None:
    res = CliRunner().invoke(cli_app(), ["sim", "fault", "--help"], terminal_width=200)
    assert res.exit_code == 0
    for kind in ("xid", "ecc-dbe", "row-remap", "gpu-lost", "nvlink", "gpu-overtemp", "inlet-overtemp", "fan",
                 "psu", "dimm-ce", "nvme-wear", "nvme-media", "os-hang", "bmc-down", "bmc-slow", "bmc-throttle"):
        assert kind in res.output
    assert "testing kinds" in res.output


async def test_scenario_timeline_plays_fast_with_time_scale(fleet: SimFleet) -> None:
    fd = fleet.dynamics
    assert isinstance(fd, FleetDyn) and fleet.control_url
    scen = """
name: quick
steps:
  - {at: 30s, node: node-00003, kind: xid, xid: 79, gpu: 1}
  - {at: 60s, nodes: [node-00001, node-00002], kind: fan, target: 0, duration: 60s}
  - {at: 90s, node: node-00003, action: clear}
"""
    async with aiohttp.ClientSession() as s:
        async with s.post(fleet.control_url + "/scenario", data=scen) as r:
            assert r.status == 201, await r.text()
        # 30 simulated seconds at x200: 0.15 s
        await asyncio.sleep(0.35)
        assert [f.kind for f in fd.nodes["node-00003"].faults] == ["xid"]
        await asyncio.sleep(0.2)
        assert [f.kind for f in fd.nodes["node-00001"].faults] == ["fan"]
        await asyncio.sleep(0.9)
        assert fd.nodes["node-00003"].faults == []
        assert fd.nodes["node-00001"].faults == []  # its duration ran out
        async with s.get(fleet.control_url + "/scenario") as r:
            state = await r.json()
        assert all(step["done"] for step in state["steps"])
        async with s.post(fleet.control_url + "/scenario", data="- {at: 1s, node: nope, kind: fan}") as r:
            assert r.status == 400


def test_scenario_examples_parse() -> None:
    import yaml

    files = sorted(EXAMPLES.glob("*.yaml"))
    assert files
    for f in files:
        steps = parse_scenario(yaml.safe_load(f.read_text()))
        assert steps and all(s.at >= 0 for s in steps)


async def test_scenario_file_from_config_and_inband_listener(tmp_path: Path) -> None:
    scen = tmp_path / "s.yaml"
    scen.write_text("- at: 10s\n  node: node-00001\n  kind: os-hang\n")
    cfg = SimConfig(nodes=2, mix={"dgx": 2}, http=True, port=0, base_address="127.11.5.1", seed=2,
                    time_scale=100.0, inband=True, inband_port=0, scenario=scen)
    async with SimFleet(cfg) as fleet:
        fd = fleet.dynamics
        assert isinstance(fd, FleetDyn) and fd.inband is not None
        url = fd.inband.url("node-00002")
        assert url and url.startswith("http://127.12.5.2:")
        async with aiohttp.ClientSession() as s:
            async with s.get(url) as r:
                text = await r.text()
            assert r.status == 200
            assert text.count("DCGM_FI_DEV_GPU_TEMP{") == 8 and 'Hostname="node-00002"' in text
            assert "DCGM_FI_DEV_ROW_REMAP_FAILURE" in text and "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" in text
        await asyncio.sleep(0.4)
        assert fd.nodes["node-00001"].os_state() == "hung"
