"""The fault engine (control API, `redfleet sim fault`) reaches legacy-ipmi nodes too: their own model shows the
fault in sensors and SEL, and the engine lists and clears it like any other."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import aiohttp
import pytest

from redfleet.sim import SimConfig, SimFleet

needs_ipmitool = pytest.mark.skipif(shutil.which("ipmitool") is None, reason="Debian's ipmitool is not installed")


def _ipmitool(address: str, port: int, *args: str) -> str:
    cmd = ["ipmitool", "-I", "lanplus", "-H", address, "-p", str(port), "-U", "root", "-P", "calvin", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True).stdout


@needs_ipmitool
async def test_control_api_faults_on_a_legacy_node(mockups, tmp_path):
    cfg = SimConfig(mix={"openbmc": 1, "legacy-ipmi": 1}, port=0, ipmi_port=0, http=True, control_port=0,
                    base_address="127.11.220.1", cache_dir=tmp_path)
    async with SimFleet(cfg) as fleet:
        legacy = next(n for n in fleet.nodes if n.flavor == "legacy-ipmi")
        port = fleet.ipmi.port
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.post(f"{fleet.control_url}/nodes/{legacy.name}/faults",
                                 json={"kind": "fan", "target": 1}) as r:
                assert r.status == 201, await r.text()
                fault = await r.json()
            async with http.post(f"{fleet.control_url}/nodes/{legacy.name}/faults", json={"kind": "xid"}) as r:
                assert r.status == 400 and "legacy-ipmi" in await r.text()  # no GPU on a legacy node
            status = await asyncio.to_thread(_ipmitool, legacy.address, port, "chassis", "status")
            assert "Cooling/Fan Fault    : true" in status
            async with http.get(f"{fleet.control_url}/faults") as r:
                listed = await r.json()
            assert fault["id"] in {f["id"] for f in listed["active"]}
            async with http.delete(f"{fleet.control_url}/nodes/{legacy.name}/faults") as r:
                assert r.status == 200, await r.text()
                assert [f["id"] for f in (await r.json())["cleared"]] == [fault["id"]]
            status = await asyncio.to_thread(_ipmitool, legacy.address, port, "chassis", "status")
            assert "Cooling/Fan Fault    : false" in status
