"""The hook points sim-dyn relies on, with a fake dynamics object; CLI help; config parsing."""

from __future__ import annotations

import asyncio

import pytest
from sim_core_helpers import AUTH, fleet_and_client, get_json
from typer.testing import CliRunner

from redfleet.sim import FleetDynamics, NodeDynamics, parse_mix
from redfleet.sim.latency import LatencySpec

pytestmark = pytest.mark.usefixtures("mockups")


class FakeDyn(NodeDynamics):
    def __init__(self, node):
        self.node = node
        self.gone: set[str] = set()
        self.power: list[tuple[str, str, str | None]] = []
        self.logs: list[str] = []
        self.hung = False

    def watches(self, path):
        return path == self.node.facts.system_path

    def overlay(self, path, doc):
        doc["Oem"] = {"Sim": {"Live": True}}
        return doc

    def hidden(self, path):
        return path in self.gone

    @property
    def hides_any(self):
        return bool(self.gone)

    def accepts_reset(self, reset_type):
        return not (self.hung and reset_type.startswith("Graceful"))

    def on_power(self, old, new, reset_type):
        self.power.append((old, new, reset_type))

    def on_log_entry(self, log_path, entry):
        self.logs.append(entry["Message"])


class FakeFleetDyn(FleetDynamics):
    def __init__(self):
        self.started = False
        self.nodes: dict[str, FakeDyn] = {}

    def node_dynamics(self, node):
        self.nodes[node.name] = FakeDyn(node)
        return self.nodes[node.name]

    async def start(self, fleet):
        self.started = True


async def test_hooks(tmp_path):
    fd = FakeFleetDyn()
    async with fleet_and_client(tmp_path, mix={"dgx": 1}, http=True, base_address="127.10.20.1",
                                dynamics=lambda fleet: fd, time_scale=1000.0) as (fleet, client):
        assert fd.started
        info = fleet.nodes[0]
        node = fleet.node(info.name)
        dyn = fd.nodes[info.name]
        st, doc, _ = await get_json(client, info.bmc_url + node.facts.system_path)
        assert doc["Oem"] == {"Sim": {"Live": True}}
        gpu = node.facts.gpus[0]
        coll = gpu.rsplit("/", 1)[0]
        _, before, _ = await get_json(client, info.bmc_url + coll)
        dyn.gone.add(gpu)
        st, _, _ = await get_json(client, info.bmc_url + gpu)
        assert st == 404
        _, after, _ = await get_json(client, info.bmc_url + coll)
        assert after["Members@odata.count"] == before["Members@odata.count"] - 1
        assert gpu not in [m["@odata.id"] for m in after["Members"]]
        _, exp, _ = await get_json(client, info.bmc_url + coll + "?$expand=.")
        assert gpu not in [m["@odata.id"] for m in exp["Members"]]
        dyn.gone.clear()
        # power transitions reach on_power; graceful refused by a hung OS changes nothing
        dyn.hung = True
        reset = info.bmc_url + node.facts.system_path + "/Actions/ComputerSystem.Reset"
        async with client.post(reset, json={"ResetType": "GracefulShutdown"}, headers=AUTH) as r:
            assert r.status == 204
        assert node.power_state == "On" and dyn.power == []
        async with client.post(reset, json={"ResetType": "ForceRestart"}, headers=AUTH) as r:
            assert r.status == 204
        for _ in range(200):
            if node.power_state == "On" and len(dyn.power) >= 3:
                break
            await asyncio.sleep(0.01)
        assert [p[1] for p in dyn.power] == ["Off", "PoweringOn", "On"]
        assert any("powered on" in m for m in dyn.logs)


def test_cli_help_and_parsing():
    from redfleet.cli.main import app

    result = CliRunner().invoke(app, ["sim", "--help"])
    assert result.exit_code == 0
    for flag in ("--nodes", "--mix", "--port", "--http", "--base-address", "--fleet-out", "--seed", "--time-scale",
                 "--control-port", "--mockup", "--user", "--password"):
        assert flag in result.output
    assert parse_mix("dell=2, hpe=1") == {"dell": 2, "hpe": 1}
    with pytest.raises(KeyError):
        parse_mix("cray=2")
    with pytest.raises(ValueError):
        parse_mix("dell")
    assert LatencySpec.parse("uniform:5ms-50ms") == LatencySpec("uniform", 0.005, 0.05)
    assert LatencySpec.parse("lognormal:50ms,0.5").kind == "lognormal"
    assert LatencySpec.parse("const:2s").a == 2.0
