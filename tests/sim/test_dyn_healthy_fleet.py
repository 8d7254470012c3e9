"""A fleet with no fault reads healthy: simulated load swings stay inside each sensor's thresholds, and running
energy totals never raise an alarm, however long the fleet runs."""

from __future__ import annotations

import asyncio

from redfleet.redfish import RedfishClient, read_sensors
from redfleet.sim import SimConfig, SimFleet

FLAVORS = {"hpe": 1, "dgx": 1, "dell": 1, "supermicro": 1}


async def _alarms(fleet: SimFleet) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in fleet.nodes:
        async with RedfishClient(n.bmc_url, "root", "calvin", verify=False, name=n.name) as c:
            readings = await read_sensors(c)
        out[n.name] = [f"{r.name}={r.value} {r.health}" for r in readings.readings
                       if r.health in ("Warning", "Critical")]
    return out


async def test_no_fault_no_alarm_over_simulated_hours(mockups):
    cfg = SimConfig(mix=FLAVORS, port=0, http=True, base_address="127.11.200.1", seed=7, time_scale=3600.0)
    async with SimFleet(cfg) as fleet:
        first = await _alarms(fleet)
        await asyncio.sleep(2.0)  # two simulated hours: energy totals grow past the AMI HMC's "thresholds"
        later = await _alarms(fleet)
    assert first == {n: [] for n in first}, first
    assert later == {n: [] for n in later}, later
